"""The run's checkpoints: the best one and ``last.ckpt``, which always holds the newest state of the run."""

from __future__ import annotations

import os
from typing import Any, Literal
from weakref import proxy

import pytorch_lightning as pl
from fsspec.utils import get_protocol
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException
from typing_extensions import override

from training.checkpoint_io import AtomicCheckpointIO, atomic_link


class ModelCheckpoint(pl.callbacks.ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (the top-k checkpoints by a monitored metric) whose ``last.ckpt`` is always
    the newest state of the run, a complete file of its own (``save_last=true``; ``"link"`` is refused).

    Lightning writes ``last.ckpt`` only along with a new top-k checkpoint, so after epochs that do not improve the
    monitored metric it holds an older state. Here it is also written

    * at the end of every training epoch (after its validation and top-k checkpoint),
    * every ``last_every_n_train_steps`` optimizer steps (0: never), so that a run killed in a long epoch loses at
      most that many steps; each of these saves writes the whole training state (weights, optimizer, loops), and
    * when training stops on SIGTERM or SIGINT (``training/interrupt.py``), at the step boundary where it stops.

    The files go through the trainer's CheckpointIO, crash-safe with the default trainer config
    (``training/checkpoint_io.py``). A step's periodic save does not count as that step's checkpoint for the
    top-k, which Lightning allows once per step: an epoch ending on such a step still gets its top-k checkpoint.
    """

    def __init__(
        self, *, save_last: bool | Literal["link"] | None = None, last_every_n_train_steps: int = 0, **kwargs: Any
    ) -> None:
        """Lightning's arguments (``dirpath``, ``monitor``, ``save_top_k``, ...), ``save_last`` (write ``last.ckpt``)
        and ``last_every_n_train_steps``."""
        if save_last == "link":
            raise ValueError("save_last='link' makes last.ckpt a link to an older file; use save_last=true")
        if last_every_n_train_steps < 0:
            raise ValueError(f"last_every_n_train_steps must be 0 (off) or more, got {last_every_n_train_steps}")
        super().__init__(save_last=False, **kwargs)  # upstream's last.ckpt, with the top-k saves only: written here
        self.writes_last = bool(save_last)
        self.last_every_n_train_steps = last_every_n_train_steps
        self._last_saved_step: int | None = None  # the global step last.ckpt was last written at

    def save_last_now(self, trainer: pl.Trainer, same_as: str = "") -> None:
        """Write ``last.ckpt`` with the current state (``Trainer.save_checkpoint``: in every process, through the
        trainer's CheckpointIO), as upstream writes a checkpoint; or, when ``same_as`` is a local file just written
        with this very state (a top-k checkpoint) in a run of one process, make it a hard link to that file: a
        checkpoint written once, not twice (the link keeps the bytes when the top-k file is later removed)."""
        path = os.path.join(self.dirpath or "", f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
        local = same_as and trainer.world_size == 1 and get_protocol(path) == "file"
        writer = trainer.strategy.checkpoint_io
        if local and isinstance(writer, AtomicCheckpointIO):  # linked after the file is written, in the background
            writer.link_checkpoint(same_as, path)
        elif not (local and atomic_link(same_as, path)):
            trainer.save_checkpoint(path, self.save_weights_only)
        self.last_model_path, self._last_saved_step = path, trainer.global_step
        for logger in trainer.loggers:
            logger.after_save_checkpoint(proxy(self))

    def _last_is_due(self, trainer: pl.Trainer, once_a_step: bool = True) -> bool:
        """Whether ``last.ckpt`` is to be written now: while fitting (not its sanity check, not ``fast_dev_run``) and,
        ``once_a_step``, not yet at this step."""
        fitting = trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking and not trainer.fast_dev_run
        again = once_a_step and self._last_saved_step == trainer.global_step
        return self.writes_last and fitting and not again

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        every = self.last_every_n_train_steps
        if every and trainer.global_step % every == 0 and self._last_is_due(trainer):
            self.save_last_now(trainer)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        best = self.best_model_path
        super().on_train_epoch_end(trainer, pl_module)  # the top-k, when they are considered at the epoch's end
        # after the epoch's validation and top-k, before its scheduler step; also after a periodic save of its last
        # step, which held the state before the validation
        if self._last_is_due(trainer, once_a_step=False):
            self.save_last_now(trainer, same_as=self.best_model_path if self.best_model_path != best else "")

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the top-k also when the checkpoint comes from another directory, the earlier run that a resumed
        run (``ckpt_path``, training/resume.py) goes on from, so that its best checkpoint stays the best of the
        whole training: an earlier run's file that the new run outdoes is dropped from the top-k but kept on disk
        (Lightning removes checkpoints in its own ``dirpath`` only). ``last.ckpt`` is the new run's own."""
        if state_dict.get("dirpath", self.dirpath) == self.dirpath:
            super().load_state_dict(state_dict)
            return
        for name in ("best_model_score", "best_model_path", "current_score", "kth_best_model_path", "kth_value"):
            setattr(self, name, state_dict.get(name, getattr(self, name)))
        self.best_k_models = dict(state_dict.get("best_k_models", {}))

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        if isinstance(exception, SIGTERMException) and self._last_is_due(trainer):  # not yet saved at this step
            self.save_last_now(trainer)
