"""The LightningModule for classification (images or sequences): cross-entropy or SVM loss, top-1/top-5 accuracy."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics import MaxMetric, Metric, MetricCollection

from training.base import OptimizerFactory, TrainingModule, loss_mean


class MulticlassHingeLoss(nn.Module):
    """The multiclass SVM loss of the CS231n notes (Weston & Watkins 1999): the mean over examples of
    ``sum_{j != y} max(0, s_j - s_y + 1) ** p``, hinge for ``p=1`` and squared hinge for ``p=2``.

    ``torch.nn.MultiMarginLoss`` computes the same sum divided by the number of classes C; the notes'
    form is that times C, so the loss (and its gradient) does not shrink as the classes grow.
    """

    def __init__(self, p: int = 1) -> None:
        super().__init__()
        self.p = p

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.multi_margin_loss(scores, labels, p=self.p, margin=1.0) * scores.shape[-1]


class Accuracy(Metric):
    """Top-1 accuracy (``acc``) and, ``with_top5``, top-5 accuracy (``acc_top5``): the fraction of examples whose
    label has the highest score, or is among the five highest. As torchmetrics' ``MulticlassAccuracy`` with
    ``average="micro"`` (ties go the same way: top-1 by ``argmax``, top-5 by ``topk``), from one count of hits per
    batch instead of per-class statistics, which on a small network cost as much as its training step."""

    full_state_update = False

    def __init__(self, with_top5: bool = False) -> None:
        super().__init__()
        self.names = ["acc", "acc_top5"] if with_top5 else ["acc"]
        self.add_state("correct", torch.zeros(len(self.names), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        hits = [(scores.argmax(dim=-1) == labels).sum()]
        if len(self.names) > 1:  # a label stands at most once among the five highest scores
            hits.append((scores.topk(5, dim=-1).indices == labels.unsqueeze(-1)).sum())
        self.correct += torch.stack(hits)
        self.total += labels.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.correct / self.total, strict=True))


class ScoringModule(TrainingModule):
    """What the classifiers share: a loss over the network's outputs (with GoogLeNet's auxiliary heads), one
    metric collection per stage, ``{train,val,test}/loss`` and ``val/acc_best``.

    Subclasses set ``criterion``, call ``_set_metrics`` with the metrics (one of them giving ``acc``; a metric whose
    ``compute`` gives several values lists their ``names``), and may change how inputs are scored (``_scores``) and
    what the metrics are given (``_metric_inputs``).
    """

    criterion: nn.Module

    def _set_metrics(self, metrics: dict[str, Metric]) -> None:
        collection = MetricCollection(metrics)
        self.metric_names = [name for key, metric in metrics.items() for name in getattr(metric, "names", [key])]
        self.train_metrics = collection.clone(prefix="train/")
        self.train_batch_metrics = collection.clone(prefix="train/")  # one batch's, on the steps the loggers write
        self.val_metrics = collection.clone(prefix="val/")
        self.test_metrics = collection.clone(prefix="test/")
        self.val_loss, self.test_loss = loss_mean(), loss_mean()
        self.val_acc_best = MaxMetric()

    def monitorable_metrics(self) -> list[str]:
        return [
            "val/loss", *(f"val/{name}" for name in self.metric_names), "val/acc_best",
            "train/loss", *(f"train/{name}" for name in self.metric_names),
        ]  # fmt: skip

    def _scores(self, inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        return self(inputs)

    def _metric_inputs(self, scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return scores, targets

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss and the scores the metrics are computed from."""
        inputs, targets = batch
        outputs = self._scores(inputs)
        if isinstance(outputs, tuple):
            # Auxiliary classifiers (in training mode GoogLeNet returns (logits, aux1, aux2), Inception-v3
            # (logits, aux)): Szegedy et al. 2015, Section 5, add their losses to the total with a discount weight
            # of 0.3 (Inception-v3's TF-slim training script 0.4).
            logits, *aux_logits = outputs
            aux_loss = sum(self.criterion(aux, targets) for aux in aux_logits)
            return self.criterion(logits, targets) + self.hparams.aux_loss_weight * aux_loss, logits
        return self.criterion(outputs, targets), outputs

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, scores = self._shared_step(batch)
        metric_inputs = self._metric_inputs(scores, batch[1])
        self.train_metrics.update(*metric_inputs)
        if self.log_training_loss(loss, len(batch[1])):  # and the batch's own metrics on the same steps
            self.train_batch_metrics.reset()
            values = self.train_batch_metrics(*metric_inputs)
            self.log_batch_values({f"{key}_step": value for key, value in values.items()})
        return self.regularize(loss, len(batch[1]))

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        values = self.train_metrics.compute()
        self.log_dict({f"{key}_epoch": value for key, value in values.items()}, sync_dist=True)
        self.log_dict(values, logger=False, sync_dist=True)  # under the names a scheduler may monitor
        self.train_metrics.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Update the epoch's metrics; return the batch's scores, which callbacks read in ``on_validation_batch_end``
        (``training.monitoring``): the logits, or with K crops per input the log of their averaged softmax."""
        loss, scores = self._shared_step(batch)
        self.val_metrics.update(*self._metric_inputs(scores, batch[1]))
        self.val_loss.update(loss.expand(len(batch[1])))
        return scores

    def on_validation_epoch_end(self) -> None:
        # computed over the whole validation set: every process's share under DDP (data.base.evaluation_sampler)
        loss, values = self.val_loss.compute(), self.val_metrics.compute()
        self.val_acc_best(values["val/acc"])
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log_dict(values, sync_dist=True)
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)
        self.val_loss.reset()
        self.val_metrics.reset()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Update the test metrics; return the batch's scores (as ``validation_step``), which an ensemble's
        ``training.tasks.ProbabilityRecorder`` reads in ``on_test_batch_end``."""
        loss, scores = self._shared_step(batch)
        self.test_metrics.update(*self._metric_inputs(scores, batch[1]))
        self.test_loss.update(loss.expand(len(batch[1])))
        return scores

    def on_test_epoch_end(self) -> None:
        self.log_dict({"test/loss": self.test_loss.compute(), **self.test_metrics.compute()}, sync_dist=True)
        self.test_loss.reset()
        self.test_metrics.reset()


class Classifier(ScoringModule):
    """Trains ``net`` with softmax cross-entropy (or ``loss: hinge | squared_hinge``, the multiclass SVM) and logs
    ``{train,val,test}/{loss,acc,acc_top5}``.

    ``label_smoothing`` mixes the one-hot target with the uniform distribution (Szegedy et al. 2016,
    Section 7), cross-entropy only. A network that returns a tuple in training mode (GoogLeNet's and
    Inception-v3's auxiliary heads) has the losses of the extra outputs added with ``aux_loss_weight``. The other
    arguments are ``TrainingModule``'s.
    """

    targets = "classes"  # the labels it trains on: class indices (see ClassificationDataModule.targets)

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory | None,
        num_classes: int,
        *,
        scheduler_monitor: str = "val/acc",
        aux_loss_weight: float = 0.3,
        loss: Literal["cross_entropy", "hinge", "squared_hinge"] = "cross_entropy",
        label_smoothing: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(net, optimizer, scheduler_monitor=scheduler_monitor, **kwargs)
        if loss not in ("cross_entropy", "hinge", "squared_hinge"):
            raise ValueError(f"loss must be 'cross_entropy', 'hinge' or 'squared_hinge', got {loss!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if label_smoothing and loss != "cross_entropy":
            raise ValueError(f"label_smoothing applies to cross_entropy only; with loss={loss} leave it at 0")
        if loss == "cross_entropy":
            self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        else:
            self.criterion = MulticlassHingeLoss(p=1 if loss == "hinge" else 2)
        self._set_metrics({"acc": Accuracy(with_top5=num_classes > 5)})

    def forward_crops(self, crops: torch.Tensor) -> torch.Tensor:
        """Log of the softmax averaged over the K crops of each image (B, K, C, H, W).

        AlexNet's test-time augmentation (Krizhevsky et al. 2012, Sec. 4.1): "averaging the predictions
        made by the network's softmax layer on the ten patches". Cross-entropy of these log-probabilities
        is the negative log of the averaged probability of the true class.
        """
        batch, num_crops = crops.shape[:2]
        probabilities = self(crops.flatten(0, 1)).softmax(dim=-1).view(batch, num_crops, -1).mean(dim=1)
        return probabilities.log()

    def _scores(self, inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        return self.forward_crops(inputs) if inputs.ndim == 5 else self(inputs)
