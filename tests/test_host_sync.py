"""No host synchronisation in a steady-state training step (docs/benchmarks.md, "Host synchronisation").

On a GPU every read of a tensor's value on the host (``.item()``, ``.cpu()``, ``.tolist()``, ``.numpy()``, ``bool``,
``float``, ``int``) waits for the queue of work to finish. Apart from the steps whose values the loggers write (every
``trainer.log_every_n_steps``: ``training.base.is_logging_step``), the first step and an epoch's last (its
validation and checkpoints), a training step with every default callback and guard makes none: counted here on the
CPU by wrapping those Tensor methods over a fit of two epochs. Torch's optimizers read their step counts, which they
keep on the CPU (a GPU's too, unless ``capturable`` or ``fused``), and these reads are not counted.
"""

from __future__ import annotations

import os
import threading
import traceback
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytorch_lightning as pl
import torch

from conftest import compose_config
from training.tasks import train

TARGET = "{_target_: test_host_sync.HostReads}"
READS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__")


class HostReads(pl.Callback):
    """Counts the host reads of tensors in the main thread, by training step: from a batch's start to the next's."""

    current: ClassVar[tuple[int, int, bool] | None] = None  # (global step, log_every_n_steps, last of its epoch)
    steps: ClassVar[list[tuple[int, int, bool]]] = []
    reads: ClassVar[dict[tuple[int, int, bool], list[str]]] = defaultdict(list)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        last = idx + 1 == trainer.num_training_batches
        HostReads.current = (trainer.global_step, trainer.log_every_n_steps, last)
        HostReads.steps.append(HostReads.current)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        HostReads.current = None


@contextmanager
def counting_reads() -> Iterator[None]:
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def counted(name: str) -> Any:
        def read(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if HostReads.current is not None and threading.current_thread() is threading.main_thread():
                where = "".join(traceback.format_stack(limit=4)[:-1])
                if f"torch{os.sep}optim{os.sep}" in where:
                    return originals[name](tensor, *args, **kwargs)  # an optimizer's step count: on the CPU always
                HostReads.reads[HostReads.current].append(f"Tensor.{name} in\n{where}")
            return originals[name](tensor, *args, **kwargs)

        return read

    HostReads.reads.clear()
    HostReads.steps.clear()
    try:
        for name in READS:
            setattr(torch.Tensor, name, counted(name))
        yield
    finally:
        for name, method in originals.items():
            setattr(torch.Tensor, name, method)
        HostReads.current = None


def text_file(directory: Path) -> Path:
    path = directory / "input.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 200, encoding="utf-8")
    return path


def steady(step: int, every: int, last: bool) -> bool:
    return step > 0 and not last and (step + 1) % every != 0


@pytest.mark.parametrize(
    "overrides",
    [
        [],  # the default run: LeNet-5 on the digits, 40 steps an epoch
        ["experiment=lstm_adding", "data.train_size=1280", "data.batch_size=32"],  # a regressor
        # a language model on 9,000 characters: 28 steps an epoch
        ["experiment=char_lstm", "data.path={text}", "data.seq_len=20", "data.batch_size=16", "model.hidden_size=32"],
    ],
    ids=["classifier", "regressor", "language_model"],
)
def test_a_steady_state_training_step_reads_nothing_on_the_host(tmp_path: Path, overrides: list[str]) -> None:
    cfg = compose_config(  # every default callback, the progress bar too
        "train",
        tmp_path / "run",
        [
            *(o.format(text=text_file(tmp_path)) for o in overrides),
            "trainer.accelerator=cpu",
            "trainer.max_epochs=2",
            "test=false",
            f"+callbacks.host_reads={TARGET}",
        ],
    )
    with counting_reads():
        train(cfg)
    reads = dict(HostReads.reads)
    assert sum(steady(*step) for step in HostReads.steps) >= 40  # steady steps of both epochs
    assert any(not steady(*step) for step in reads), "no read counted at all: the counter is broken"
    offending = {step: calls for step, calls in reads.items() if steady(*step)}
    first = min(offending, default=None)
    assert not offending, f"{len(offending)} steady steps read on the host, e.g. step {first[0]}:\n" + "\n".join(
        offending[first]
    )
