"""Stopping a run cleanly on SIGTERM (a scheduler's preemption, ``kill``) or SIGINT (Ctrl+C).

One guard covers the whole of a script (``stop_on_signals``, installed by ``training.cli.run``): a signal raises
``Interrupted`` at once, wherever the script is, the test of a checkpoint, a prediction, an export or the
learning-rate range test; the script ends with one line naming what was stopped and exits 128 + the signal's number
(also where nothing catches it: ``Interrupted`` is a ``SystemExit``), never 0.

Training alone stops at a step boundary, with a checkpoint. Lightning already handles SIGTERM there: its handler
marks the trainer, the loops raise ``SIGTERMException`` at the next step boundary, and the callbacks' ``on_exception``
hooks run (``training.checkpointing.ModelCheckpoint`` writes ``last.ckpt`` there). ``StopOnSignal`` adds, while
training runs, that SIGINT takes the same path (a second SIGINT stops at once, as Ctrl+C normally does, without a
checkpoint) and that the signal is recorded, so that ``interrupted`` can name it. Lightning's own handlers, SLURM's
requeue signal among them, keep working: the handlers installed here call the ones Lightning installed, and Lightning
restores the original ones after fit.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Quote, QuotedString
from pytorch_lightning.callbacks import LearningRateFinder
from rich.console import Console

from training.checkpointing import ModelCheckpoint

console = Console(soft_wrap=True, stderr=True)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(SystemExit):
    """A signal stopped the script; ``during`` says where (what was kept, how to go on), ``checkpoint`` where training
    was saved (None: nowhere). The exit status is the shell's convention for a process ended by the signal, 128 + its
    number."""

    def __init__(self, signum: int, during: str = "", checkpoint: str | None = None) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.during = during
        self.checkpoint = checkpoint

    def __str__(self) -> str:
        during = self.during or "before the run finished; its results were not written"
        return f"stopped by {signal.Signals(self.signum).name} {during}"


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGINT raise ``Interrupted`` at once (training excepted, which
    ``StopOnSignal`` stops at its next step boundary); a signal the process was started to ignore (SIGINT under
    ``nohup`` or ``&``) stays ignored. The earlier handlers are restored afterwards."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    earlier = {signum: signal.getsignal(signum) for signum in SIGNALS}
    for signum, handler in earlier.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, _stop)
    try:
        yield
    finally:
        for signum, handler in earlier.items():
            if handler is not None:
                signal.signal(signum, handler)


@contextlib.contextmanager
def during(what: str) -> Iterator[None]:
    """Name the part of the run that the block is, in the line of a signal that stops it there (the innermost
    ``during`` names it)."""
    try:
        yield
    except Interrupted as stop:
        stop.during = stop.during or what
        raise


class StopOnSignal(pl.Callback):
    """While training runs, SIGTERM and SIGINT stop it at the next step boundary; ``received`` is the signal. The
    learning-rate range test is not training: a signal stops it at once."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._lightning_handler: Any = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.received = None
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only
        if any(isinstance(callback, LearningRateFinder) for callback in trainer.callbacks):
            return  # the range test (lr_find): stopped at once; its own temporary checkpoint is removed as it unwinds
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
            # Lightning's handler calls the handlers installed before it: the script's guard would stop at once
            with contextlib.suppress(Interrupted):
                self._lightning_handler(signum, frame)


def interrupted(trainer: pl.Trainer, stopper: StopOnSignal, signum: int | None = None) -> Interrupted:
    """The ``Interrupted`` for a fit stopped by a signal (``signum``, else the one ``stopper`` received): where it
    stopped and the checkpoint saved there."""
    signum = stopper.received or signum or signal.SIGTERM
    if trainer.global_step == 0:
        return Interrupted(signum, "before the first training step; nothing to resume")
    where = f"at step {trainer.global_step} (epoch {trainer.current_epoch})"
    checkpoint = trainer.checkpoint_callback
    last = checkpoint.last_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
    if not last:
        return Interrupted(
            signum, f"{where}; no checkpoint was saved (it needs callbacks.model_checkpoint with save_last=true)"
        )
    return Interrupted(signum, f"{where}; checkpoint saved: {last}", last)


def hydra_override(key: str, value: str) -> str:
    """``key=value`` as a Hydra override that gives exactly the string ``value``, whatever characters it holds:
    quoted where Hydra would read it otherwise (non-ASCII letters, spaces, quotes, ``=``, ``${``...)."""
    plain = f"{key}={value}"
    with contextlib.suppress(Exception):  # Hydra's lexer and parser errors
        parsed = OverridesParser.create().parse_override(plain)
        if "${" not in value and parsed.value() == value and isinstance(parsed.value(), str):
            return plain
    quote = Quote.single if '"' in value else Quote.double
    quoted = QuotedString(text=value.replace("${", r"\${"), quote=quote).with_quotes()  # ${: not an interpolation
    return f"{key}={quoted}"


def resume_command(checkpoint: str, argv: list[str]) -> str:
    """The command line ``argv`` (a script and its overrides) again, resuming from ``checkpoint``: quoted for the
    shell and for Hydra, so that it runs as printed."""
    keep = [arg for arg in argv[1:] if not arg.startswith(("-", "ckpt_path=", "hydra.run.dir=", "hydra.sweep."))]
    return shlex.join(["python", argv[0], *keep, hydra_override("ckpt_path", checkpoint)])
