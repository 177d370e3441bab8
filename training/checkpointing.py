"""The run's checkpoints: the best one and ``last.ckpt``, which always holds the newest state of the run."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException
from typing_extensions import override


class ModelCheckpoint(pl.callbacks.ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (the top-k checkpoints by a monitored metric) whose ``last.ckpt`` is always
    the newest state of the run, a complete file of its own (``save_last=true``; ``"link"`` is refused).

    Lightning writes ``last.ckpt`` only along with a new top-k checkpoint, so after epochs that do not improve the
    monitored metric it holds an older state. Here it is also written

    * at the end of every epoch (after validation, where the top-k are considered),
    * every ``last_every_n_train_steps`` optimizer steps (0: never), so that a run killed in a long epoch loses at
      most that many steps; each of these saves writes the whole training state (weights, optimizer, loops), and
    * when training stops on SIGTERM or SIGINT (``training/interrupt.py``), at the step boundary where it stops.

    The files go through the trainer's CheckpointIO, crash-safe with the default trainer config
    (``training/checkpoint_io.py``). A step's periodic save does not count as that step's checkpoint for the
    top-k, which Lightning allows once per step: an epoch ending on such a step still gets its top-k checkpoint.
    """

    def __init__(self, *, last_every_n_train_steps: int = 0, **kwargs: Any) -> None:
        """Lightning's arguments (``dirpath``, ``monitor``, ``save_last``, ...), and ``last_every_n_train_steps``."""
        if kwargs.get("save_last") == "link":
            raise ValueError("save_last='link' makes last.ckpt a link to an older file; use save_last=true")
        if last_every_n_train_steps < 0:
            raise ValueError(f"last_every_n_train_steps must be 0 (off) or more, got {last_every_n_train_steps}")
        super().__init__(**kwargs)
        self.last_every_n_train_steps = last_every_n_train_steps

    def save_last_now(self, trainer: pl.Trainer) -> None:
        """Write ``last.ckpt`` with the current state (when ``save_last`` is on), leaving the step free for a
        top-k checkpoint."""
        saved_step = self._last_global_step_saved
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._last_global_step_saved = saved_step

    def _last_is_due(self, trainer: pl.Trainer) -> bool:
        return bool(self.save_last) and not self._should_skip_saving_checkpoint(trainer)

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
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer) and self._last_is_due(trainer):
            self.save_last_now(trainer)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer) and self._last_is_due(trainer):
            self.save_last_now(trainer)

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
