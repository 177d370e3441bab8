"""What every task's LightningModule shares: the network, its optimizer and scheduler."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.optim import Optimizer

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[[Optimizer], Any]


class TrainingModule(pl.LightningModule):
    """Holds ``net`` and builds its optimizer and scheduler from partials (Hydra's ``_partial_: true``).

    Subclasses define the loss and the metrics, and call ``save_hyperparameters`` with ``net``,
    ``optimizer`` and ``scheduler`` ignored, so that the checkpoint keeps only plain data: the
    ``run_config`` from which a checkpoint alone rebuilds model and data.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str = "val/loss",
    ) -> None:
        super().__init__()
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.scheduler_monitor = scheduler_monitor

    def forward(self, x: torch.Tensor) -> Any:
        return self.net(x)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": self.scheduler_factory(optimizer),
                "interval": self.scheduler_interval,
                "monitor": self.scheduler_monitor,
            },
        }
