"""The LightningModule for classification (images or sequences): cross-entropy, top-1/top-5 accuracy."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from training.base import OptimizerFactory, SchedulerFactory, TrainingModule


class Classifier(TrainingModule):
    """Trains ``net`` with softmax cross-entropy and logs ``{train,val,test}/{loss,acc,acc_top5}``.

    A network that returns a tuple in training mode (GoogLeNet's auxiliary heads) has the losses of
    the extra outputs added with ``aux_loss_weight``. ``run_config`` is the run's resolved
    configuration, kept in the checkpoint so that a checkpoint alone rebuilds model and data.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str = "val/acc",
        aux_loss_weight: float = 0.3,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(net, optimizer, scheduler, scheduler_interval, scheduler_monitor)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.criterion = nn.CrossEntropyLoss()
        metrics = {"acc": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
        if num_classes > 5:
            metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        collection = MetricCollection(metrics)
        self.train_metrics = collection.clone(prefix="train/")
        self.val_metrics = collection.clone(prefix="val/")
        self.test_metrics = collection.clone(prefix="test/")
        self.val_acc_best = MaxMetric()

    def forward_crops(self, crops: torch.Tensor) -> torch.Tensor:
        """Log of the softmax averaged over the K crops of each image (B, K, C, H, W).

        AlexNet's test-time augmentation (Krizhevsky et al. 2012, Sec. 4.1): "averaging the predictions
        made by the network's softmax layer on the ten patches". Cross-entropy of these log-probabilities
        is the negative log of the averaged probability of the true class.
        """
        batch, num_crops = crops.shape[:2]
        probabilities = self(crops.flatten(0, 1)).softmax(dim=-1).view(batch, num_crops, -1).mean(dim=1)
        return probabilities.log()

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        outputs = self.forward_crops(images) if images.ndim == 5 else self(images)
        if isinstance(outputs, tuple):
            # Auxiliary classifiers (GoogLeNet in training mode return (logits, aux1, aux2)): Szegedy et al.
            # 2015, Section 5, add their losses to the total with a discount weight of 0.3.
            logits, *aux_logits = outputs
            aux_loss = sum(self.criterion(aux, labels) for aux in aux_logits)
            return self.criterion(logits, labels) + self.hparams.aux_loss_weight * aux_loss, logits
        return self.criterion(outputs, labels), outputs

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logits = self._shared_step(batch)
        self.train_metrics(logits, batch[1])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log_dict(self.train_metrics, on_step=True, on_epoch=True)
        return loss

    def on_train_start(self) -> None:
        # The sanity-check validation before training must not count towards the best accuracy.
        self.val_acc_best.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._shared_step(batch)
        self.val_metrics.update(logits, batch[1])
        self.log("val/loss", loss, on_epoch=True, prog_bar=True)
        self.log_dict(self.val_metrics, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_metrics["acc"].compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._shared_step(batch)
        self.test_metrics.update(logits, batch[1])
        self.log("test/loss", loss, on_epoch=True)
        self.log_dict(self.test_metrics, on_epoch=True)
