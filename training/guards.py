"""Guards around training, as Lightning callbacks (configs/guards/; docs/debugging.md).

``InitialLossCheck`` compares a softmax classifier's first loss with ln C, the loss at chance; ``NanGuard``
stops a run whose loss, gradients or weights stop being finite, before it writes such weights to a checkpoint.
Neither reads a value on the host in a steady-state training step (see ``training.base.is_logging_step``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NoReturn

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from rich.console import Console
from torch import nn
from torch.nn import functional as F
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle

from training.base import is_logging_step

console = Console(soft_wrap=True)


class InitialLossWarning(UserWarning):
    """The first training loss is far from the loss of a network at chance."""


class TrainingDiverged(RuntimeError):
    """The training loss, a gradient or a weight became NaN or infinite; the run stopped before saving it."""


class InitialLossCheck(pl.Callback):
    """Compare the first training batch's softmax cross-entropy with ln C, its value at chance.

    The CS231n notes' first sanity check ("look for correct loss at chance performance"): small random weights
    give near-zero logits, a uniform softmax and a loss of ln C (2.302 for 10 classes). A loss outside
    ``[low, high] * ln C`` is reported as an ``InitialLossWarning``, a console line, and the scalars
    ``sanity/initial_loss`` and ``sanity/expected_initial_loss`` in the loggers. Far above: the initial weights
    are too large, or the model or data has a bug; far below: the network knows the labels before training,
    which a fresh one cannot (labels leaking into the inputs).

    The bounds, measured on the zoo: the papers' initialisations start within 1.2 ln C, except the deepest
    ResNets (ResNet-110's He init, which trains well, reaches 2.1 ln C), while weights clearly too large,
    N(0, 1) (``init=normal model.init_std=1``), start at 4.5 to 6 ln C; ``high=3`` lies between. Below
    ``low=0.5`` a fresh network would be doing far better than chance.

    The data loss alone is checked, as the notes ask (regularisation off for this check): the cross-entropy of
    the network's logits on the first batch, read with a forward hook, without the regulariser's penalty,
    label smoothing or auxiliary heads. Modules whose criterion is not ``nn.CrossEntropyLoss`` (multi-label,
    regression, the SVM losses, language models) are skipped, and so are resumed runs and pretrained networks
    (``model.pretrained``), which are not at chance.

    "Far below" needs enough examples: one example of the class that a fresh network happens to favour has a low
    loss by chance. The warning says so only for a batch of at least ``min_examples(C, low)`` examples, the number at
    which a network whose outputs carry no information about the labels is below the bound with probability under
    ``ALPHA`` (see there); a smaller first batch is checked for "far above" only, which any one example shows (its
    softmax is far from uniform: the logits are large).
    """

    # The chance of a false "labels leak" warning that ``min_examples`` allows.
    ALPHA = 0.01

    def __init__(self, low: float = 0.5, high: float = 3.0) -> None:
        if not 0.0 < low < 1.0 < high:
            raise ValueError(f"expected 0 < low < 1 < high, got low={low}, high={high}")
        self.low = low
        self.high = high
        self._hook: RemovableHandle | None = None
        self._logits: torch.Tensor | None = None

    @classmethod
    def min_examples(cls, num_classes: int, low: float) -> int:
        """The fewest examples whose mean loss below ``low * ln C`` shows that the network predicts the labels.

        Suppose the outputs carried no information about the labels: each label independent of the softmax q_i of
        its example and uniform over the C classes. Then p_i = q_i(y_i) are independent, in [0, 1], with mean 1/C.
        By Jensen, a mean loss -1/n sum log p_i below ``low * ln C`` needs a mean p_i above C^-low, and by the
        Chernoff-Hoeffding bound that happens with probability at most exp(-n KL(C^-low || 1/C)) (KL of two
        Bernoulli distributions); n is the smallest with that at most ``ALPHA``: 27 for 10 classes, 37 for 3, 53
        for 2, 59 for 1000 (with ``low=0.5``).
        """
        a, mu = num_classes**-low, 1 / num_classes
        divergence = a * math.log(a / mu) + (1 - a) * math.log((1 - a) / (1 - mu))
        return math.ceil(math.log(1 / cls.ALPHA) / divergence)

    @staticmethod
    def applies_to(pl_module: pl.LightningModule) -> bool:
        """Whether ``pl_module`` is a fresh softmax classifier (cross-entropy over its outputs)."""
        run_config = getattr(pl_module, "hparams", {}).get("run_config") or {}
        pretrained = (run_config.get("model") or {}).get("pretrained")
        return isinstance(getattr(pl_module, "criterion", None), nn.CrossEntropyLoss) and not pretrained

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._logits = None
        if trainer.global_step == 0 and self.applies_to(pl_module):
            self._hook = pl_module.register_forward_hook(self._record)

    def _record(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._logits is None:  # the first forward pass only (L-BFGS evaluates several per step)
            self._logits = (output[0] if isinstance(output, tuple) else output).detach()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._hook is None:
            return
        self._hook.remove()
        self._hook = None
        logits, labels = self._logits, batch[1]
        self._logits = None
        if logits is None or logits.shape[:-1] != labels.shape:
            return
        loss = F.cross_entropy(logits.float(), labels).item()
        expected = math.log(logits.shape[-1])
        for logger in trainer.loggers:
            logger.log_metrics({"sanity/initial_loss": loss, "sanity/expected_initial_loss": expected}, step=0)
        if self.low * expected <= loss <= self.high * expected:
            return
        if loss < expected and labels.numel() < self.min_examples(logits.shape[-1], self.low):
            return  # too few examples to tell a network that knows the labels from chance
        if loss > expected:
            cause = (
                "the initial weights are likely too large (a smaller init scale, e.g. model.init_std, or another "
                "init), or the model, the loss or the data has a bug"
            )
        else:
            cause = "the network predicts the labels before training: do the labels leak into the inputs?"
        message = (
            f"initial loss {loss:.4g} is far from ln({logits.shape[-1]}) = {expected:.4g}, the softmax loss at "
            f"chance (accepted: {self.low:g} to {self.high:g} times it): {cause}. The check uses the data loss alone "
            "(no regulariser)."
        )
        warnings.warn(message, InitialLossWarning, stacklevel=1)
        console.print(f"[bold yellow]sanity check:[/] {message}")


def norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of each of ``tensors`` (at least one), stacked on their device: ``clip_grad_norm_``'s first step,
    whose own 2-norm is the norm of them all as one vector."""
    return torch.stack([torch.linalg.vector_norm(tensor.detach()) for tensor in tensors])


def all_finite(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Whether every element of ``tensors`` (at least one) is finite, as a 0-d bool tensor on their device.

    From the 2-norm of each tensor (``norms``): NaN or infinite when an element is, and also when the norm
    overflows its dtype (elements past about 1e19 in float32), which means divergence as surely.
    """
    return norms(tensors).isfinite().all()


class NanGuard(pl.Callback):
    """Stop training with ``TrainingDiverged`` when the loss, a gradient or a weight becomes NaN or infinite, before a
    checkpoint holds it.

    Reading a value on the host makes it wait for the GPU's queue of work, so the guard reads once every
    ``trainer.log_every_n_steps`` steps (``is_logging_step``), at the end of every epoch, before every checkpoint
    is written and when training ends, and nothing in between: it keeps each step's losses (of every backward
    pass) as tensors and checks them all at once, with the gradients of the step it reads at (before the
    optimizer applies them, and before clipping) and the weights and floating buffers (batch-norm statistics) as
    they are then. The message names the first step whose loss is not finite, or else the step of the check with
    a non-finite gradient or weight, the last finite loss and the learning rate, and suggests a tenth of the
    configured one. Under a mixed-precision GradScaler, which skips steps with infinite gradients by design, only
    the losses and the weights are checked.

    The guard raises rather than setting ``trainer.should_stop``: a stop still lets ModelCheckpoint write
    last.ckpt (and validate) with the broken weights, while an exception ends ``fit`` at once, so the
    checkpoints written so far, last.ckpt included, stay the last good ones.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # (loss, step, epoch, learning rate) since the last check
        self._losses: list[tuple[torch.Tensor, int, int, float]] = []
        self._last_loss: torch.Tensor | None = None  # the last loss of the checks so far (finite)
        # whether the gradients read before a step were finite, that step, its epoch and learning rate
        self._gradients: tuple[torch.Tensor, int, int, float] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        self._losses.append((loss.detach(), trainer.global_step + 1, trainer.current_epoch, lr))

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        if not is_logging_step(trainer) or getattr(trainer.precision_plugin, "scaler", None) is not None:
            return
        gradients = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if gradients:
            self._gradients = (
                all_finite(gradients),
                trainer.global_step + 1,
                trainer.current_epoch,
                optimizer.param_groups[0]["lr"],
            )

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._gradients is not None or batch_idx + 1 == trainer.num_training_batches:  # before the validation
            self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._losses:  # an epoch of unknown length (an iterable data set): checked before its scheduler step
            self._check(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # the weights as they are now, which the checkpoint would hold
            self._check(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer, pl_module)

    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Raise if a loss kept since the last check, the gradients read this step, or a weight is not finite."""
        losses, self._losses = self._losses, []
        gradients, self._gradients = self._gradients, None
        buffers = [buffer for buffer in pl_module.buffers() if buffer.is_floating_point()]
        flags = [all_finite([*pl_module.parameters(), *buffers]), *([gradients[0]] if gradients is not None else [])]
        if losses:
            flags.append(torch.stack([loss.float() for loss, *_ in losses]).isfinite())
        weights_ok, *rest = torch.cat([flag.reshape(-1) for flag in flags]).tolist()  # the one host sync
        gradients_ok = rest.pop(0) if gradients is not None else True
        for (loss, *when), ok in zip(losses, rest, strict=True):
            if not ok:
                self._stop(trainer, "training loss", *when)
            self._last_loss = loss
        if not gradients_ok:
            self._stop(trainer, "gradient norm", *gradients[1:])
        if not weights_ok:
            self._stop(trainer, "weight norm", trainer.global_step, trainer.current_epoch)

    def _stop(self, trainer: pl.Trainer, what: str, step: int, epoch: int, lr: float | None = None) -> NoReturn:
        """Raise ``TrainingDiverged`` for ``what`` at ``step``, trained at ``lr`` (by default the current rate)."""
        group = trainer.optimizers[0].param_groups[0]
        lr = group["lr"] if lr is None else lr
        configured = group.get("initial_lr", lr)  # a torch scheduler keeps the rate it started from here
        last = f"{self._last_loss.item():.4g}" if self._last_loss is not None else "none (this was the first step)"
        checkpoint = trainer.checkpoint_callback
        kept = (checkpoint.last_model_path or checkpoint.best_model_path) if checkpoint is not None else ""
        raise TrainingDiverged(
            f"training diverged: a non-finite {what} at step {step} (epoch {epoch}); last finite "
            f"loss {last}, learning rate {lr:.4g}. Try a lower learning rate, e.g. a tenth: "
            f"optimizer.lr={configured / 10:.4g}. "
            + (f"The checkpoints written before are kept: {kept}" if kept else "No checkpoint had been written.")
        )
