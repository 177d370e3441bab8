"""Speed switches of the training config (docs/scaling.md): ``channels_last=true`` and ``compile=true``; and the
trainer's profiler that measures nothing at no cost (``NoProfiler``).

Both act on the LightningModule's network in every process, as a fit or a test sets up: after DDP has started its
processes (``ddp_spawn`` pickles the module, which a compiled one is not) and before the strategy moves the module
to its device and wraps it. Neither changes the state dict, so checkpoints load the same with or without them.
"""

from __future__ import annotations

import weakref
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.profilers import PassThroughProfiler
from torch import nn

# the networks switched in this process: once each, though ``setup`` runs for every stage (and every Trainer)
CHANNELS_LAST: weakref.WeakSet[nn.Module] = weakref.WeakSet()
COMPILED: weakref.WeakSet[nn.Module] = weakref.WeakSet()


# torch.compile's modes: "reduce-overhead" records CUDA graphs (one launch for the whole network's kernels: small
# networks on a GPU spend most of a step launching kernels), "max-autotune" also times kernel variants
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_arguments(mode: str) -> dict[str, Any]:
    """The keyword arguments of ``torch.compile`` (``nn.Module.compile``) for ``compile_mode``."""
    return {} if mode == "default" else {"mode": mode}


def channels_last_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """A forward pre-hook: a batch of images (N, C, H, W) in channels-last layout; other inputs as they are."""
    if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    return None


class SpeedSwitches(pl.Callback):
    """Puts ``pl_module.net`` in channels-last layout (its 4-d weights and every image batch it is given) and
    compiles it with ``torch.compile`` in ``compile_mode`` (in place, ``nn.Module.compile``: the first steps of each
    input shape and of training and evaluation mode are slow while it compiles).

    Channels-last is the layout tensor cores read convolutions in: on a GPU it speeds up convolutional networks
    under ``trainer.precision=bf16-mixed`` or ``16-mixed``; on a CPU it changes little.
    """

    def __init__(self, channels_last: bool = False, compile: bool = False, compile_mode: str = "default") -> None:
        if compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode: one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}")
        self.channels_last = channels_last
        self.compile = compile
        self.compile_mode = compile_mode

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        net = getattr(pl_module, "net", pl_module)
        if self.channels_last and net not in CHANNELS_LAST:
            CHANNELS_LAST.add(net)
            net.to(memory_format=torch.channels_last)
            net.register_forward_pre_hook(channels_last_input)
        if self.compile and net not in COMPILED:
            COMPILED.add(net)
            net.compile(**compile_arguments(self.compile_mode))


class NoProfiler(PassThroughProfiler):
    """Lightning's default profiler, which measures nothing, without its cost (``trainer.profiler``).

    Lightning wraps every hook it calls, each callback's included, in ``profiler.profile(name)``: for its default
    ``PassThroughProfiler`` a new generator-based context manager each time, about 1 us. The default run calls about
    a hundred a training step (a dozen callbacks, seven hooks each): 2% of a LeNet-5 epoch on a 2-core CPU
    (docs/benchmarks.md). This one hands back one ``nullcontext`` for all of them.
    """

    _nothing = nullcontext()

    def profile(self, action_name: str) -> AbstractContextManager[Any]:
        return self._nothing
