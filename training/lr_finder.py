"""The learning-rate range test before fitting (``lr_find=true``): Lightning's ``Tuner.lr_find``, plotted."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytorch_lightning as pl
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.tuner import Tuner
from rich.console import Console

console = Console(soft_wrap=True)
DIVERGED = 4.0  # Lightning's early_stop_threshold: the test stops once the smoothed loss passes 4 times its lowest
EDGE = 0.1  # a suggestion among the first or last tenth of the rates tried is at an edge of the range


def find_learning_rate(
    trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule, plot_path: Path
) -> float | None:
    """Run the range test on ``module`` and return the suggested learning rate (None when there is none).

    Lightning's test with its defaults: 100 training steps with the rate growing exponentially from 1e-8 to 1,
    stopped early once the loss passes 4 times its lowest; the suggestion is the rate where the loss falls
    fastest. The module's weights and the trainer are restored afterwards. The plot of loss against rate is
    saved to ``plot_path`` and, with a TensorBoard logger, as the figure ``lr_find/plot``, beside the scalar
    ``lr_find/suggestion``.

    A suggestion is not used (None, and one line says why) when the test was cut short before the loss diverged
    (the run's epochs have fewer training batches than the test's steps: the rates never grew large enough) or
    when it lies at an edge of the rates tried (the steepest descent may lie beyond them).
    """
    with warnings.catch_warnings():  # Lightning restores its own temporary checkpoint, written just before
        warnings.filterwarnings("ignore", message=".*weights_only.*", category=FutureWarning)
        finder = Tuner(trainer).lr_find(module, datamodule=datamodule, update_attr=False)
    if finder is None:  # Lightning skips the test under fast_dev_run
        console.print("lr_find: skipped (fast_dev_run); the configured learning rate stays")
        return None
    suggestion = finder.suggestion()
    rates, losses = finder.results["lr"], finder.results["loss"]
    finite = [loss for loss in losses if math.isfinite(loss)]
    diverged = bool(finite) and (not math.isfinite(losses[-1]) or losses[-1] > DIVERGED * min(finite))
    why_not = ""
    if len(rates) < finder.num_training and not diverged:
        why_not = (
            f"the test ran {len(rates)} of its {finder.num_training} steps (the run's epochs have no more training "
            "batches) and stopped before the loss diverged, at too low a rate for a suggestion"
        )
    elif suggestion is not None and not EDGE <= rates.index(suggestion) / len(rates) < 1 - EDGE:
        why_not = f"its suggestion {suggestion:.3g} lies at an edge of the rates tried"
    if why_not:
        suggestion = None
    figure = Figure(figsize=(6, 4), layout="tight")
    finder.plot(suggest=suggestion is not None, ax=figure.add_subplot())
    figure.savefig(plot_path)
    tensorboard = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
    if tensorboard is not None:
        tensorboard.experiment.add_figure("lr_find/plot", figure, global_step=0, close=False)
        if suggestion is not None:
            tensorboard.log_metrics({"lr_find/suggestion": suggestion}, step=0)
    if why_not:
        console.print(f"lr_find: not used: {why_not}; the configured learning rate stays; plot: {plot_path}")
    elif suggestion is None:
        console.print(
            "lr_find: no suggestion: the test ran too few steps (it ends with the run's epochs or when the loss "
            f"diverges); the configured learning rate stays; plot: {plot_path}"
        )
    else:
        console.print(f"lr_find: suggested learning rate {suggestion:.3g}, training with it; plot: {plot_path}")
    return suggestion
