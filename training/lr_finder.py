"""The learning-rate range test before fitting (``lr_find=true``): Lightning's ``Tuner.lr_find``, plotted."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.tuner import Tuner
from rich.console import Console

console = Console(soft_wrap=True)


def find_learning_rate(
    trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule, plot_path: Path
) -> float | None:
    """Run the range test on ``module`` and return the suggested learning rate (None when there is none).

    Lightning's test with its defaults: 100 training steps with the rate growing exponentially from 1e-8 to 1,
    stopped early once the loss passes 4 times its lowest; the suggestion is the rate where the loss falls
    fastest. The module's weights and the trainer are restored afterwards. The plot of loss against rate is
    saved to ``plot_path`` and, with a TensorBoard logger, as the figure ``lr_find/plot``, beside the scalar
    ``lr_find/suggestion``.
    """
    finder = Tuner(trainer).lr_find(module, datamodule=datamodule, update_attr=False)
    if finder is None:  # Lightning skips the test under fast_dev_run
        console.print("lr_find: skipped (fast_dev_run); the configured learning rate stays")
        return None
    suggestion = finder.suggestion()
    figure = Figure(figsize=(6, 4), layout="tight")
    finder.plot(suggest=suggestion is not None, ax=figure.add_subplot())
    figure.savefig(plot_path)
    tensorboard = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
    if tensorboard is not None:
        tensorboard.experiment.add_figure("lr_find/plot", figure, global_step=0, close=False)
        if suggestion is not None:
            tensorboard.log_metrics({"lr_find/suggestion": suggestion}, step=0)
    if suggestion is None:
        console.print(
            "lr_find: no suggestion: the test ran too few steps (it ends with the run's epochs or when the loss "
            f"diverges); the configured learning rate stays; plot: {plot_path}"
        )
    else:
        console.print(f"lr_find: suggested learning rate {suggestion:.3g}, training with it; plot: {plot_path}")
    return suggestion
