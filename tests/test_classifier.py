"""The LightningModule's loss: plain cross-entropy, and auxiliary heads added with their weight."""

import functools

import pytest
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from training import Classifier
from training.base import loss_mean
from training.classifier import Accuracy


class ThreeHeads(nn.Module):
    """A stand-in for GoogLeNet: (logits, aux1, aux2) in training, the logits alone in eval."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(4, 3) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = tuple(head(x) for head in self.heads)
        return outputs if self.training else outputs[0]


def make_module(net: nn.Module, **kwargs: float) -> Classifier:
    return Classifier(net, functools.partial(torch.optim.SGD, lr=0.1), num_classes=3, **kwargs)


def test_auxiliary_losses_are_added_with_their_weight() -> None:
    torch.manual_seed(0)
    net = ThreeHeads()
    module = make_module(net, aux_loss_weight=0.3)
    images, labels = torch.randn(8, 4), torch.randint(0, 3, (8,))
    loss, logits = module._shared_step((images, labels))
    main, aux1, aux2 = (nn.functional.cross_entropy(head(images), labels) for head in net.heads)
    assert loss.item() == pytest.approx((main + 0.3 * (aux1 + aux2)).item())
    assert torch.equal(logits, net.heads[0](images))

    net.eval()  # evaluation sees the main head only
    loss, _ = module._shared_step((images, labels))
    assert loss.item() == pytest.approx(main.item())


def test_a_single_output_gives_plain_cross_entropy() -> None:
    net = nn.Linear(4, 3)
    images, labels = torch.randn(8, 4), torch.randint(0, 3, (8,))
    loss, _ = make_module(net)._shared_step((images, labels))
    assert loss.item() == pytest.approx(nn.functional.cross_entropy(net(images), labels).item())


def test_top5_accuracy_is_logged_only_when_there_are_more_than_five_classes() -> None:
    scores, labels = torch.randn(8, 10), torch.randint(0, 3, (8,))
    assert set(make_module(nn.Linear(4, 3)).val_metrics(scores[:, :3], labels)) == {"val/acc"}
    module = Classifier(nn.Linear(4, 10), functools.partial(torch.optim.SGD, lr=0.1), num_classes=10)
    assert set(module.val_metrics(scores, labels)) == {"val/acc", "val/acc_top5"}


def test_accuracy_counts_as_torchmetrics_multiclass_accuracy_ties_included() -> None:
    generator = torch.Generator().manual_seed(0)
    accuracy = Accuracy(with_top5=True)
    top1, top5 = MulticlassAccuracy(10, average="micro"), MulticlassAccuracy(10, top_k=5, average="micro")
    batches = [  # scores of few distinct values (many ties), and all equal with every label the first class
        (torch.randint(0, 4, (16, 10), generator=generator).float(), torch.randint(0, 10, (16,), generator=generator))
        for _ in range(5)
    ] + [(torch.zeros(16, 10), torch.zeros(16, dtype=torch.long))]
    for scores, labels in batches:
        for metric in (accuracy, top1, top5):
            metric.update(scores, labels)
    assert accuracy.compute() == {"acc": top1.compute(), "acc_top5": top5.compute()}
    assert 0 < top1.compute() < top5.compute() < 1


def test_ten_crop_batches_average_the_softmax_over_the_crops() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 3))
    crops, labels = torch.randn(4, 10, 2, 3, 3), torch.randint(0, 3, (4,))
    loss, log_probabilities = make_module(net)._shared_step((crops, labels))
    mean_probabilities = torch.stack([net(image_crops).softmax(-1).mean(0) for image_crops in crops])
    torch.testing.assert_close(log_probabilities.exp(), mean_probabilities)
    expected = -mean_probabilities[torch.arange(4), labels].log().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_scheduler_may_watch_the_epoch_metrics_the_classifier_logs() -> None:
    assert make_module(nn.Linear(4, 3)).monitorable_metrics() == [
        "val/loss", "val/acc", "val/acc_best", "train/loss", "train/acc",
    ]  # fmt: skip
    module = Classifier(nn.Linear(4, 10), functools.partial(torch.optim.SGD, lr=0.1), num_classes=10)
    assert {"val/acc_top5", "train/acc_top5"} <= set(module.monitorable_metrics())


def test_loss_mean_weighs_batches_by_their_examples_and_keeps_a_nan() -> None:
    mean = loss_mean()
    mean.update(torch.tensor(1.0).expand(10))
    mean.update(torch.tensor(3.0).expand(30))
    assert mean.compute().item() == 2.5  # (10 x 1 + 30 x 3) / 40, not the mean of the batches' losses
    mean.update(torch.tensor(float("nan")).expand(2))
    assert mean.compute().isnan()  # a diverged batch shows in the epoch's loss
