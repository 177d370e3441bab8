"""Stochastic depth (Huang et al. 2016) as the ``drop_path`` switch of the residual families: the linear decay rule
of Eq. 4, the survival frequencies in training, the plain network at evaluation and with the switch off, the refused
rates, and the switch through scripts/train.py's path."""

import pytest
import torch
from torch import nn
from torchvision.ops import StochasticDepth

from conftest import FAST_DATA, build_on_meta
from models import ResidualBlock, create_model, drop_path_rates
from models.preact_resnet import CifarPreActResNet, PreActResNet
from models.resnet import BasicBlock, Bottleneck, CifarResNet, ResNet
from models.resnext import ResNeXtCifar
from models.wide_resnet import WideResNet
from training.config import UserError
from training.tasks import build, train

# one small network of each residual family class, as (class, architecture, options); 3 to 4 blocks each
FAMILIES = {
    "cifar_resnet": (CifarResNet, (1,), {}),
    "resnet_basic": (ResNet, (BasicBlock, (1, 1, 1, 1)), {"num_classes": 10}),
    "resnext_bottleneck": (ResNet, (Bottleneck, (1, 1, 1, 1)), {"num_classes": 10, "groups": 2, "width_per_group": 4}),
    "wide_resnet": (WideResNet, (10, 1), {}),
    "resnext_cifar": (ResNeXtCifar, (11, 2, 4), {}),
    "preact_cifar": (CifarPreActResNet, ("bottleneck", 20), {}),
    "preact_basic": (PreActResNet, ("basic", (1, 1, 1, 1)), {"num_classes": 10}),
}


def small(family: str, **options: object) -> nn.Module:
    model_class, architecture, defaults = FAMILIES[family]
    return model_class(*architecture, **defaults, **options)


def rates(model: nn.Module) -> list[float | None]:
    """The drop probability of each residual block in the order they run; None where the block has none."""
    blocks = [module for module in model.modules() if isinstance(module, ResidualBlock)]
    return [None if block.drop_path is None else block.drop_path.p for block in blocks]


def test_resnet110_blocks_drop_by_the_linear_decay_rule() -> None:
    model = build_on_meta("resnet110", drop_path=0.5)
    # Eq. 4 with L = 54 blocks (3 stages of n = 18) and p_L = 0.5: block l drops with l / 54 * 0.5
    expected = [index / 54 * 0.5 for index in range(1, 55)]
    assert rates(model) == pytest.approx(expected, abs=1e-12) and len(expected) == 54
    assert drop_path_rates(54, 0.5) == pytest.approx(expected, abs=1e-12)
    assert rates(model)[-1] == 0.5 and rates(model)[26] == pytest.approx(0.25)
    blocks = [module for module in model.modules() if isinstance(module, StochasticDepth)]
    assert {block.mode for block in blocks} == {"batch"}  # the paper's: one draw per mini-batch (Section 3)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_residual_block_of_every_family_gets_its_rate(family: str) -> None:
    blocks = rates(small(family, drop_path=0.4))
    assert blocks == pytest.approx(drop_path_rates(len(blocks), 0.4)) and len(blocks) >= 3


def test_survival_frequencies_in_training_match_the_rule_and_each_block_drops_for_the_whole_batch() -> None:
    torch.manual_seed(0)
    model = CifarResNet(1, drop_path=0.6).train()  # 3 blocks: drop probabilities 0.2, 0.4, 0.6
    layers = [module for module in model.modules() if isinstance(module, StochasticDepth)]
    kept = {layer: [] for layer in layers}

    def record(layer: StochasticDepth, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        (branch,) = inputs
        if torch.count_nonzero(output) == 0:  # dropped: every sample's branch is zero (mode "batch")
            kept[layer].append(False)
        else:  # kept: every sample's branch, scaled by 1 / survival probability
            assert torch.allclose(output, branch / (1 - layer.p))
            kept[layer].append(True)

    for layer in layers:
        layer.register_forward_hook(record)
    forwards = 1000
    with torch.no_grad():
        for _ in range(forwards):
            model(torch.randn(4, 3, 1, 1))
    for layer, expected_drop in zip(layers, [0.2, 0.4, 0.6], strict=True):
        survival = sum(kept[layer]) / forwards
        # 4 standard errors of a binomial frequency, sqrt(p (1 - p) / n) <= 0.0155 for n = 1000: at most 0.062
        tolerance = 4 * ((1 - expected_drop) * expected_drop / forwards) ** 0.5
        assert survival == pytest.approx(1 - expected_drop, abs=tolerance)


@pytest.mark.parametrize("family", FAMILIES)
def test_eval_is_deterministic_and_equals_the_network_without_stochastic_depth(family: str) -> None:
    torch.manual_seed(0)
    plain = small(family)
    dropping = small(family, drop_path=0.5)
    dropping.load_state_dict(plain.state_dict())  # strict: the same keys
    x = torch.randn(2, 3, 16, 16)
    dropping.eval(), plain.eval()
    with torch.no_grad():
        first = dropping(x)
        torch.testing.assert_close(first, dropping(x), atol=0, rtol=0)
        torch.testing.assert_close(first, plain(x), atol=0, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_drop_path_zero_adds_no_module_and_keeps_the_state_dict_keys(family: str) -> None:
    with torch.device("meta"):
        default, off, on = small(family), small(family, drop_path=0.0), small(family, drop_path=0.5)
    assert [name for name, _ in off.named_modules()] == [name for name, _ in default.named_modules()]
    assert not any(isinstance(module, StochasticDepth) for module in off.modules())
    assert set(rates(off)) == {None}
    assert list(off.state_dict()) == list(default.state_dict()) == list(on.state_dict())


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_a_rate_outside_zero_to_one_is_refused_in_one_line(rate: float) -> None:
    for name in ("resnet20", "resnet18", "wrn_16_8", "resnext29_8x64d", "preact_resnet164"):
        with pytest.raises(ValueError, match=rf"^drop_path must be in \[0, 1\), got {rate}$"):
            build_on_meta(name, drop_path=rate)


def test_a_bad_rate_in_the_config_is_a_one_line_user_error(train_config) -> None:
    with pytest.raises(UserError, match=r"^model: drop_path must be in \[0, 1\), got 1.0$"):
        build(train_config("model=resnet20", "model.drop_path=1.0", *FAST_DATA))


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=resnet20"],
        ["model=resnet18", "data.image_size=32"],
        ["model=wrn_16_8", "data.image_size=8"],
        pytest.param(["model=resnext29_8x64d", "data.image_size=8"], marks=pytest.mark.slow),
    ],
)
def test_drop_path_composes_and_trains_one_batch_through_the_entry_point(train_config, overrides: list[str]) -> None:
    cfg = train_config(*overrides, "model.drop_path=0.5", *FAST_DATA)
    blocks = rates(build(cfg)[1].net)
    assert blocks == pytest.approx(drop_path_rates(len(blocks), 0.5))
    summary = train(cfg)
    assert torch.isfinite(torch.tensor(summary["test/loss"]))


def test_stochastic_depth_experiment_is_the_papers_recipe(train_config) -> None:
    cfg = train_config("experiment=resnet110_stochastic_depth_cifar10")
    assert (cfg.model.name, cfg.model.drop_path, cfg.model.shortcut) == ("resnet110", 0.5, "A")
    assert (cfg.data.batch_size, cfg.trainer.max_epochs, list(cfg.scheduler.milestones)) == (128, 500, [250, 375])
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.nesterov) == (0.1, 0.9, True)
    assert (cfg.optimizer.weight_decay, cfg.scheduler.gamma, cfg.scheduler.interval) == (1e-4, 0.1, "epoch")
    assert cfg.scheduler.warmup == 0 and cfg.data.val_size == 5000
    assert create_model("resnet110", drop_path=cfg.model.drop_path).layer3[-1].drop_path.p == 0.5
