"""Stopping a run cleanly on SIGTERM (a scheduler's preemption, ``kill``) or SIGINT (Ctrl+C).

Lightning already handles SIGTERM: its handler marks the trainer, the loops raise ``SIGTERMException`` at the
next step boundary, and the callbacks' ``on_exception`` hooks run (``training.checkpointing.ModelCheckpoint``
writes ``last.ckpt`` there). ``StopOnSignal`` adds two things while training runs: SIGINT takes the same path
(a second SIGINT stops at once, as Ctrl+C normally does, without a checkpoint), and the signal is recorded, so that
``interrupted`` can name it. Lightning's own handlers, SLURM's requeue signal among them, keep working: the
handlers installed here call the ones Lightning installed, and Lightning restores the original ones after fit.
"""

from __future__ import annotations

import shlex
import signal
import threading
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from rich.console import Console

from training.checkpointing import ModelCheckpoint

console = Console(soft_wrap=True, stderr=True)


class TrainingInterrupted(Exception):
    """Training stopped on a signal at a step boundary; ``checkpoint`` is where it was saved (None: nowhere), and
    ``exit_code`` the shell's convention for a process ended by the signal, 128 + its number."""

    def __init__(self, message: str, signum: int, checkpoint: str | None) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
        self.checkpoint = checkpoint


class StopOnSignal(pl.Callback):
    """While training runs, SIGTERM and SIGINT stop it at the next step boundary; ``received`` is the signal."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._lightning_handler: Any = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.received = None
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only
        self._lightning_handler = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl+C twice: stop now, without a checkpoint
        self.received = signal.Signals(signum)
        if signum == signal.SIGINT:
            console.print(
                "[bold yellow]SIGINT: stopping after this step and saving a checkpoint; press Ctrl+C again to stop "
                "at once, without one"
            )
        if callable(self._lightning_handler):
            self._lightning_handler(signum, frame)


def interrupted(trainer: pl.Trainer, stopper: StopOnSignal) -> TrainingInterrupted:
    """The ``TrainingInterrupted`` for a fit that Lightning ended with ``SIGTERMException``: where it stopped and
    the checkpoint saved there."""
    signum = stopper.received or signal.SIGTERM  # before training starts, Lightning's handler alone is installed
    name = signal.Signals(signum).name
    if trainer.global_step == 0:
        return TrainingInterrupted(f"stopped by {name} before the first training step; nothing to resume", signum, None)
    where = f"stopped by {name} at step {trainer.global_step} (epoch {trainer.current_epoch})"
    checkpoint = trainer.checkpoint_callback
    last = checkpoint.last_model_path if isinstance(checkpoint, ModelCheckpoint) and checkpoint.save_last else ""
    if not last:
        return TrainingInterrupted(
            f"{where}; no checkpoint was saved (it needs callbacks.model_checkpoint with save_last=true)", signum, None
        )
    return TrainingInterrupted(f"{where}; checkpoint saved: {last}", signum, last)


def resume_command(checkpoint: str, argv: list[str]) -> str:
    """The command line ``argv`` (a script and its overrides) again, resuming from ``checkpoint``."""
    keep = [arg for arg in argv[1:] if not arg.startswith(("-", "ckpt_path=", "hydra.run.dir=", "hydra.sweep."))]
    return shlex.join(["python", argv[0], *keep, f"ckpt_path={checkpoint}"])
