"""The classifier's losses: the multiclass SVM (hinge, squared hinge) by hand, and label-smoothed cross-entropy."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from training import Classifier
from training.classifier import MulticlassHingeLoss
from training.config import UserError
from training.tasks import build, train

# The CS231n notes' example: three images (cat, car, frog) and their scores for the classes cat, car, frog.
SCORES = torch.tensor([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
LABELS = torch.tensor([0, 1, 2])


def svm_loss_by_hand(scores: torch.Tensor, labels: torch.Tensor, p: int) -> float:
    """The notes' L_i = sum over j != y_i of max(0, s_j - s_{y_i} + 1) ** p, averaged over the examples."""
    losses = []
    for row, label in zip(scores.tolist(), labels.tolist(), strict=True):
        losses.append(sum(max(0.0, s - row[label] + 1) ** p for j, s in enumerate(row) if j != label))
    return sum(losses) / len(losses)


def make_module(net: nn.Module, **kwargs) -> Classifier:
    return Classifier(net, functools.partial(torch.optim.SGD, lr=0.1), num_classes=3, **kwargs)


class Fixed(nn.Module):
    """Returns the given scores whatever the input."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores


def test_hinge_is_the_notes_multiclass_svm_loss() -> None:
    # the notes' numbers: 2.9 for the cat, 0 for the car, 12.9 for the frog
    assert MulticlassHingeLoss(p=1)(SCORES, LABELS).item() == pytest.approx((2.9 + 0 + 12.9) / 3, rel=1e-6)
    assert svm_loss_by_hand(SCORES, LABELS, p=1) == pytest.approx((2.9 + 0 + 12.9) / 3)
    # squared hinge: 2.9^2 for the cat, 6.3^2 + 6.6^2 for the frog
    squared = (2.9**2 + 6.3**2 + 6.6**2) / 3
    assert MulticlassHingeLoss(p=2)(SCORES, LABELS).item() == pytest.approx(squared, rel=1e-6)


@pytest.mark.parametrize(("loss", "p"), [("hinge", 1), ("squared_hinge", 2)])
def test_the_classifier_svm_losses_match_a_hand_computation(loss: str, p: int) -> None:
    torch.manual_seed(0)
    scores, labels = torch.randn(16, 10) * 2, torch.randint(0, 10, (16,))
    module = Classifier(Fixed(scores), functools.partial(torch.optim.SGD, lr=0.1), num_classes=10, loss=loss)
    value, _ = module._shared_step((torch.zeros(16, 1), labels))
    assert value.item() == pytest.approx(svm_loss_by_hand(scores, labels, p), rel=1e-5)
    # torch's MultiMarginLoss is the same sum divided by the number of classes
    assert value.item() == pytest.approx(10 * nn.MultiMarginLoss(p=p)(scores, labels).item(), rel=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.4])
def test_label_smoothing_matches_torch_cross_entropy(smoothing: float) -> None:
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    images, labels = torch.randn(8, 4), torch.randint(0, 3, (8,))
    loss, _ = make_module(net, label_smoothing=smoothing)._shared_step((images, labels))
    expected = F.cross_entropy(net(images), labels, label_smoothing=smoothing)
    assert loss.item() == pytest.approx(expected.item())
    # by hand: (1 - e) * NLL + e * the mean over classes of -log p
    log_p = net(images).log_softmax(-1)
    by_hand = (1 - smoothing) * -log_p[torch.arange(8), labels] - smoothing * log_p.mean(-1)
    assert loss.item() == pytest.approx(by_hand.mean().item(), rel=1e-5)


def test_label_smoothing_is_refused_with_a_hinge_loss(train_config) -> None:
    with pytest.raises(
        ValueError, match="label_smoothing applies to cross_entropy only; with loss=hinge leave it at 0"
    ):
        make_module(nn.Linear(4, 3), loss="hinge", label_smoothing=0.1)
    with pytest.raises(UserError, match=r"^module: label_smoothing applies to cross_entropy only; with loss=squared_h"):
        build(train_config("module.loss=squared_hinge", "module.label_smoothing=0.1"))
    with pytest.raises(UserError, match=r"^module.loss: expected 'cross_entropy' or 'hinge' or 'squared_hinge', got"):
        build(train_config("module.loss=svm"))
    with pytest.raises(UserError, match=r"^module: label_smoothing must be in \[0, 1\), got 1.0$"):
        build(train_config("module.label_smoothing=1.0"))


@pytest.mark.parametrize(
    "overrides", [["module.loss=hinge"], ["module.loss=squared_hinge"], ["module.label_smoothing=0.1"]]
)
def test_the_loss_choices_train_through_the_config(train_config, overrides: list[str]) -> None:
    summary = train(train_config(*overrides, "debug=fdr"))
    assert summary["test/loss"] > 0
