"""Regularisers as configuration: weight decay on weights only, L1 and elastic-net penalties, max-norm."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import CONFIG_DIR
from training import Classifier, LanguageModel, Regressor
from training.cli import check_overrides
from training.config import UserError
from training.regularization import L1, ElasticNet, MaxNorm, split_weights
from training.tasks import build, train

REGULARIZERS = sorted(path.stem for path in (CONFIG_DIR / "regularizer").glob("*.yaml"))


class Small(nn.Module):
    """A convolution, batch norm, a linear layer and a layer norm over two dimensions (its scale is 2-D)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.ln = nn.LayerNorm((2, 2))
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.ln(self.bn(self.conv(x))).flatten(1))


def classifier(net: nn.Module, optimizer=None, **kwargs) -> Classifier:
    return Classifier(net, optimizer or functools.partial(torch.optim.SGD, lr=0.1), num_classes=3, **kwargs)


def test_weights_are_the_matrices_and_kernels_of_layers_that_do_not_normalise() -> None:
    net = Small()
    weights, others = split_weights(net)
    assert {id(p) for p in weights} == {id(net.conv.weight), id(net.fc.weight)}
    assert {id(p) for p in others} == {id(p) for p in (net.conv.bias, net.bn.weight, net.bn.bias, net.fc.bias)} | {
        id(net.ln.weight),
        id(net.ln.bias),
    }


def test_weight_decay_goes_to_the_weights_and_not_to_biases_and_norms() -> None:
    net = Small()
    module = classifier(net, functools.partial(torch.optim.SGD, lr=0.1, weight_decay=0.01))
    decay, no_decay = module.configure_optimizers().param_groups
    assert (decay["name"], decay["weight_decay"]) == ("decay", 0.01)
    assert (no_decay["name"], no_decay["weight_decay"]) == ("no_decay", 0.0)
    assert {id(p) for p in decay["params"]} == {id(net.conv.weight), id(net.fc.weight)}
    assert len(no_decay["params"]) == 6

    everything = classifier(
        Small(), functools.partial(torch.optim.SGD, lr=0.1, weight_decay=0.01), decay_bias_and_norm=True
    )
    [group] = everything.configure_optimizers().param_groups
    assert group["weight_decay"] == 0.01 and len(group["params"]) == 8
    [group] = classifier(Small()).configure_optimizers().param_groups  # no decay: one group, as torch has it
    assert len(group["params"]) == 8


@pytest.mark.parametrize(
    ("optimizer", "shrink"),
    [
        (functools.partial(torch.optim.SGD, lr=0.5, weight_decay=0.2), 1 - 0.5 * 0.2),  # w -= lr * wd * w
        (functools.partial(torch.optim.AdamW, lr=0.5, weight_decay=0.2), 1 - 0.5 * 0.2),  # decoupled: the same
    ],
)
def test_a_step_with_zero_gradient_shrinks_weights_but_not_biases(optimizer, shrink: float) -> None:
    net = Small()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.uniform_(0.5, 1.5)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    step = classifier(net, optimizer).configure_optimizers()
    for parameter in net.parameters():
        parameter.grad = torch.zeros_like(parameter)
    step.step()
    for name, parameter in net.named_parameters():
        expected = before[name] * shrink if name in ("conv.weight", "fc.weight") else before[name]
        torch.testing.assert_close(parameter.detach(), expected, msg=name)


def test_the_weight_decay_config_sets_the_optimizer_and_can_decay_everything(train_config) -> None:
    _, module = build(train_config("regularizer=weight_decay"))
    groups = module.configure_optimizers()["optimizer"].param_groups
    assert [(g["name"], g["weight_decay"]) for g in groups] == [("decay", 5e-4), ("no_decay", 0.0)]
    _, module = build(train_config("regularizer=weight_decay", "module.decay_bias_and_norm=true"))
    [group] = module.configure_optimizers()["optimizer"].param_groups
    assert group["weight_decay"] == 5e-4


def penalty_by_hand(net: nn.Module, l1: float, l2: float) -> float:
    weights = [net.conv.weight, net.fc.weight]
    return l1 * sum(w.abs().sum().item() for w in weights) + l2 * sum((w**2).sum().item() for w in weights)


def fit_one_step(module: pl.LightningModule, batch: tuple[torch.Tensor, ...]) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, DataLoader(TensorDataset(*batch), batch_size=len(batch[0])))
    return trainer


@pytest.mark.parametrize(("regularizer", "l1", "l2"), [(L1(0.01), 0.01, 0.0), (ElasticNet(0.01, 0.3), 0.01, 0.3)])
def test_the_logged_penalty_is_l1_times_the_sum_of_absolute_weights_plus_l2_times_squares(
    regularizer: ElasticNet, l1: float, l2: float
) -> None:
    torch.manual_seed(0)
    net = Small()
    expected = penalty_by_hand(net, l1, l2)  # before the step: the penalty is computed on these weights
    module = classifier(net, functools.partial(torch.optim.SGD, lr=0.0), regularizer=regularizer)
    images, labels = torch.randn(6, 1, 4, 4), torch.randint(0, 3, (6,))
    data_loss = nn.functional.cross_entropy(net(images), labels).item()  # batch norm in training mode, as in fit
    outputs = []
    module.on_train_batch_end = lambda output, *args: outputs.append(output["loss"].item())
    trainer = fit_one_step(module, (images, labels))
    # the batch's values (logged to the loggers directly) and the epoch's mean over its one batch
    assert module.batch_values["train/reg_loss_step"].item() == pytest.approx(expected, rel=1e-5)
    assert module.batch_values["train/loss_step"].item() == pytest.approx(data_loss, rel=1e-5)
    assert trainer.callback_metrics["train/reg_loss_epoch"].item() == pytest.approx(expected, rel=1e-5)
    assert outputs == [pytest.approx(data_loss + expected, rel=1e-5)]  # what the optimizer minimises


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # no trainer: nothing to log to
def test_the_penalty_pulls_weights_but_not_biases() -> None:
    torch.manual_seed(0)
    net = Small()
    loss = classifier(net, regularizer=L1(1.0)).regularize(torch.zeros(()), 4)
    loss.backward()
    torch.testing.assert_close(net.fc.weight.grad, net.fc.weight.sign())
    assert net.fc.bias.grad is None and net.bn.weight.grad is None


def test_no_penalty_no_reg_loss() -> None:
    module = classifier(Small(), regularizer=MaxNorm(3.0))
    loss = torch.tensor(1.5)
    assert module.regularize(loss, 4) is loss
    assert not module.train_reg_loss.update_called


def unit_norms(weight: torch.Tensor) -> torch.Tensor:
    return weight.flatten(1).norm(dim=1)


def test_max_norm_rescales_each_unit_and_each_filter_that_is_too_long() -> None:
    linear, conv = nn.Linear(4, 3), nn.Conv2d(2, 3, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[3.0, 4.0, 0, 0], [0.3, 0.4, 0, 0], [1.0, 1.0, 1.0, 1.0]]))  # norms 5, 0.5, 2
        conv.weight.fill_(1.0)  # each filter: 18 ones, norm sqrt(18)
        conv.weight[1] *= 0.1  # norm 0.42
    MaxNorm(1.0).constrain(nn.Sequential(linear, conv))
    torch.testing.assert_close(unit_norms(linear.weight), torch.tensor([1.0, 0.5, 1.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(linear.weight[0], torch.tensor([0.6, 0.8, 0, 0]), atol=1e-6, rtol=0)  # direction kept
    torch.testing.assert_close(unit_norms(conv.weight), torch.tensor([1.0, 18**0.5 * 0.1, 1.0]), atol=1e-6, rtol=0)


def test_max_norm_holds_after_every_optimizer_step() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3))
    module = classifier(net, functools.partial(torch.optim.SGD, lr=50.0), regularizer=MaxNorm(0.5))
    fit_one_step(module, (torch.randn(8, 1, 4, 4) * 10, torch.randint(0, 3, (8,))))
    assert unit_norms(net[0].weight).max() <= 0.5 + 1e-6 and unit_norms(net[3].weight).max() <= 0.5 + 1e-6
    unconstrained = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3))
    unconstrained.load_state_dict(net.state_dict())
    fit_one_step(
        classifier(unconstrained, functools.partial(torch.optim.SGD, lr=50.0)),
        (torch.randn(8, 1, 4, 4) * 10, torch.randint(0, 3, (8,))),
    )
    assert unit_norms(unconstrained[3].weight).max() > 0.5  # without the constraint the step leaves the ball


@pytest.mark.parametrize("regularizer", REGULARIZERS)
def test_every_regularizer_trains_through_the_config(train_config, regularizer: str) -> None:
    summary = train(train_config(f"regularizer={regularizer}", "debug=fdr"))
    assert 0.0 <= summary["test/acc"] <= 1.0


def test_the_regressor_and_the_language_model_take_a_regularizer(train_config, tmp_path: Path) -> None:
    _, module = build(train_config("experiment=gru_adding", "regularizer=elastic_net"))
    assert isinstance(module, Regressor) and isinstance(module.regularizer, ElasticNet)
    text = tmp_path / "input.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 300)
    small = [f"data.path={text}", "data.seq_len=10", "data.batch_size=4"]
    summary = train(train_config("experiment=char_lstm", *small, "regularizer=max_norm", "debug=fdr"))
    assert summary["test/loss"] > 0
    _, module = build(train_config("experiment=char_lstm", *small, "regularizer=l1"))
    assert isinstance(module, LanguageModel) and module.regularizer.l1 == 1e-5


def test_bad_regularizer_settings_are_one_line(train_config) -> None:
    with pytest.raises(UserError, match=r"^unknown regularizer 'l3'; accepted: elastic_net, l1, max_norm, none, "):
        check_overrides(["regularizer=l3"])
    with pytest.raises(UserError, match=r"^regularizer: max_norm must be positive, got -1.0$"):
        build(train_config("regularizer=max_norm", "regularizer.max_norm=-1.0"))
    with pytest.raises(UserError, match=r"^optimizer.weight_decay: not an argument of torch.optim.lbfgs.LBFGS"):
        build(train_config("regularizer=weight_decay", "optimizer=lbfgs"))


def test_activation_parameters_are_not_weights() -> None:
    from models import make_activation

    net = nn.Sequential(nn.Linear(4, 3), make_activation("maxout", 3), nn.Linear(3, 2), make_activation("prelu", 2))
    weights, others = split_weights(net)
    assert {id(p) for p in weights} == {id(net[0].weight), id(net[2].weight)}
    assert {id(p) for p in net[1].parameters()} <= {id(p) for p in others}
