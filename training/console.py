"""What a training run prints while it trains (``configs/callbacks/default.yaml``): a one-line model summary as the
fit starts and a progress bar of one line of at most 80 columns; its other output is filtered here too.

Piped to a file, rich draws a progress bar once, as it ends, instead of redrawing it (rich knows when its output is
not a terminal, and then takes it to be 80 columns wide).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.callbacks.progress.rich_progress import BatchesProcessedColumn, CustomBarColumn
from rich.console import Console
from rich.progress import ProgressColumn, TextColumn, TimeRemainingColumn

from models.summary import scaled, summarize

console = Console(soft_wrap=True)


# Lightning's info lines that say nothing the run's own output does not: its advertisements, the end of the fit (which
# lands on the progress bar's line, still drawn in a terminal) and the checkpoints restored (the one tested, which the
# summary names; a resumed run's, which it names itself; lr_find's temporary one)
UNSAID = (
    "💡 Tip",
    "`Trainer.fit` stopped:",
    "Restoring states from the checkpoint",
    "Restored all states from the checkpoint",
    "Loaded model weights from the checkpoint",
)


def _said(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(UNSAID)


def _not_about_weights_only(record: logging.LogRecord) -> bool:
    return "`weights_only` was not set" not in record.getMessage()


def quiet_lightning_log() -> None:
    """Leave ``UNSAID`` out of Lightning's log, and its note on the temporary checkpoint of ``lr_find``'s range test
    ("`weights_only` was not set"), which only Lightning reads. (Each filter is added once, however often a process
    runs a script: ``addFilter`` skips one it already has.)"""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_said)
    logging.getLogger("pytorch_lightning.trainer.connectors.checkpoint_connector").addFilter(_not_about_weights_only)


class ModelSummary(pl.Callback):
    """Prints, as a fit sets up, one line: the network, its parameters (and how many train, where some are frozen)
    and its multiply-adds for one input of the data (``models.summary``; ``scripts/summary.py`` gives them layer
    by layer). Lightning's own summary (``trainer.enable_model_summary``) lists the metric objects too, and counts
    no multiply-adds without an example input. Printed once: not again for the fit after ``lr_find``'s range test."""

    def __init__(self) -> None:
        self.printed = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if stage != "fit" or not trainer.is_global_zero or datamodule is None or self.printed:
            return
        self.printed = True
        net = pl_module.net if isinstance(getattr(pl_module, "net", None), torch.nn.Module) else pl_module
        shape = tuple(datamodule.input_shape)
        summary = summarize(net, shape, getattr(datamodule, "input_dtype", torch.float32))
        trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
        frozen = f" ({trainable:,} trainable)" if trainable != summary.parameters else ""
        console.print(
            f"model: {type(net).__name__}, {summary.parameters:,} parameters{frozen}, "
            f"{scaled(summary.macs)} multiply-adds per {'x'.join(map(str, shape))} input"
        )


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar in one line of at most 80 columns: the epoch, its batches, the time left and
    ``metrics``, a mapping of the logged metrics it shows to the names it shows them under (those a task does not
    log are left out).

    The bars are redrawn after a batch at most every ``redraw_seconds`` (the training bar after an epoch's last batch
    too), not after every batch as Lightning's are: a redraw costs about 0.2 ms, 3% of a LeNet-5 epoch on a 2-core
    CPU when drawn after each of its 46 batches in a quarter of a second (docs/benchmarks.md), and no one reads a bar
    faster.
    """

    def __init__(self, metrics: dict[str, str], redraw_seconds: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not redraw_seconds >= 0:
            raise ValueError(f"redraw_seconds must be 0 or more, got {redraw_seconds!r}")
        self.metrics = dict(metrics)
        self.redraw_seconds = redraw_seconds
        self._next_draw = 0.0  # time.monotonic() from which the training bar is redrawn
        self._shown: dict[str, float] = {}  # the values last read, by the names they are shown under
        self._in_batch = False  # a training batch is under way
        self._logs = False  # the training batch under way logs values

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        logs_this_step = getattr(pl_module, "logs_this_step", None)  # a TrainingModule's schedule of logging
        self._logs = logs_this_step is None or logs_this_step()
        self._in_batch = True

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._logs and self.is_enabled:  # read on the step that logged them, drawn or not: no other step reads
            self._read(trainer, pl_module)
        if trainer.is_last_batch or self._due():
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._in_batch = False

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._due():  # the validation bar goes when the validation ends: its last state need not be drawn
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def _due(self) -> bool:
        """Whether a batch's redraw is due (``redraw_seconds`` after the last), counting this one as drawn."""
        now = time.monotonic()
        if now < self._next_draw:
            return False
        self._next_draw = now + self.redraw_seconds
        return True

    def configure_columns(self, trainer: pl.Trainer) -> list[ProgressColumn]:
        return [
            TextColumn("[progress.description]{task.description}"),
            CustomBarColumn(
                bar_width=20,
                complete_style=self.theme.progress_bar,
                finished_style=self.theme.progress_bar_finished,
                pulse_style=self.theme.progress_bar_pulse,
            ),
            BatchesProcessedColumn(style=self.theme.batch_progress),
            TimeRemainingColumn(),
        ]

    def _read(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a TrainingModule's batch values go to the loggers directly, not through trainer.callback_metrics
        logged = {**trainer.callback_metrics, **getattr(pl_module, "batch_values", {})}
        self._shown = {name: float(logged[key]) for key, name in self.metrics.items() if key in logged}

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """The shown metrics' values. Within the training batches, those read when the task last logged: a
        ``TrainingModule`` logs on some steps only (``logs_this_step``), and reading a value on the host waits for
        the GPU."""
        if not self._in_batch:
            self._read(trainer, pl_module)
        return self._shown
