"""The LightningModule for regression: mean squared error (the adding problem)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchmetrics import MeanSquaredError, MinMetric

from training.base import OptimizerFactory, TrainingModule


class Regressor(TrainingModule):
    """Trains ``net`` to predict one number per example with MSE; logs ``{train,val,test}/loss`` (the MSE).

    Its arguments are ``TrainingModule``'s.
    """

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory | None, **kwargs: Any) -> None:
        super().__init__(net, optimizer, **kwargs)
        self.criterion = nn.MSELoss()
        self.val_mse = MeanSquaredError()
        self.test_mse = MeanSquaredError()
        self.val_loss_best = MinMetric()

    def monitorable_metrics(self) -> list[str]:
        return ["val/loss", "val/loss_best", "train/loss"]

    def _predict(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = batch
        return self(inputs).squeeze(-1), targets

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.criterion(*self._predict(batch))
        self.log_training_loss(loss, len(batch[1]))
        return self.regularize(loss, len(batch[1]))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.val_mse.update(*self._predict(batch))

    def on_validation_epoch_end(self) -> None:
        # the epoch's MSE over every process's share, logged once (Lightning's self.log costs about 0.4 ms)
        mse = self.val_mse.compute()
        self.val_mse.reset()
        self.val_loss_best(mse)
        self.log("val/loss", mse, prog_bar=True)
        self.log("val/loss_best", self.val_loss_best.compute(), prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.test_mse.update(*self._predict(batch))

    def on_test_epoch_end(self) -> None:
        self.log("test/loss", self.test_mse.compute())
        self.test_mse.reset()
