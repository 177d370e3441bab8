"""The LightningModule for multi-label classification: binary cross-entropy, one sigmoid per label."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchmetrics.classification import MultilabelAccuracy, MultilabelExactMatch, MultilabelF1Score

from training.base import OptimizerFactory
from training.classifier import ScoringModule


class MultiLabelClassifier(ScoringModule):
    """Trains ``net`` to say yes or no to each of ``num_labels`` labels at once, with binary cross-entropy.

    Each output is the logit of one label, independently of the others (``BCEWithLogitsLoss``, the mean over
    examples and labels), and a label is predicted when its sigmoid exceeds ``threshold``. Logs
    ``{train,val,test}/loss`` and ``/acc`` (the fraction of correct yes/no decisions over all labels), ``/f1``
    (F1 averaged over the labels) and ``/exact_match`` (the fraction of examples with every label right), and
    ``val/acc_best``. Targets are multi-hot float tensors (batch, num_labels). A network that returns a tuple in
    training mode (GoogLeNet's auxiliary heads) has the losses of the extra outputs added with ``aux_loss_weight``.
    The other arguments are ``TrainingModule``'s.
    """

    targets = "attributes"

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory | None,
        num_labels: int,
        *,
        threshold: float = 0.5,
        aux_loss_weight: float = 0.3,
        **kwargs: Any,
    ) -> None:
        super().__init__(net, optimizer, **kwargs)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        self.criterion = nn.BCEWithLogitsLoss()
        self._set_metrics(
            {
                "acc": MultilabelAccuracy(num_labels, threshold=threshold, average="micro"),
                "f1": MultilabelF1Score(num_labels, threshold=threshold, average="macro"),
                "exact_match": MultilabelExactMatch(num_labels, threshold=threshold),
            }
        )

    def _metric_inputs(self, scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # torchmetrics would guess from the values whether it got logits; probabilities leave nothing to guess
        return scores.detach().sigmoid(), targets.int()
