"""The init schemes (models.init_weights) and their config group: sparse, normal and zeros do what their papers say, and
every scheme trains through the train entry point."""

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import CONFIG_DIR, FAST_DATA
from models import INIT_SCHEMES, create_model, init_weights
from training.tasks import train


def weighted_layers(model: nn.Module) -> list[nn.Conv2d | nn.Linear]:
    return [module for module in model.modules() if isinstance(module, nn.Conv2d | nn.Linear)]


def test_sparse_gives_every_unit_15_non_zero_incoming_weights() -> None:
    torch.manual_seed(0)
    model = create_model("lenet5", init="sparse")
    for layer in weighted_layers(model):  # fan-ins 25, 150, 400, 120 and 84, all above 15
        per_unit = (layer.weight.reshape(layer.weight.shape[0], -1) != 0).sum(dim=1)
        assert (per_unit == 15).all(), layer
        assert not layer.bias.any()
    # the chosen inputs differ from unit to unit
    assert len({tuple(row.nonzero().flatten().tolist()) for row in model.features.f6.weight}) > 80


def test_sparse_keeps_every_weight_of_a_unit_with_fewer_inputs_and_draws_unit_gaussians() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 5), nn.Conv2d(1, 4, kernel_size=3), nn.Linear(2000, 1000))
    init_weights(model, "sparse")
    assert (model[0].weight != 0).all() and (model[1].weight != 0).all()  # fan-ins 10 and 9
    values = model[2].weight[model[2].weight != 0]
    assert values.numel() == 15_000
    assert values.std().item() == pytest.approx(1.0, abs=0.03) and values.mean().abs() < 0.03


@pytest.mark.parametrize("std", [0.01, 0.1])
def test_normal_draws_weights_with_the_given_std(std: float) -> None:
    torch.manual_seed(0)
    model = create_model("resnet20", init="normal", init_std=std)
    weights = torch.cat([layer.weight.flatten() for layer in weighted_layers(model)])  # 270k values
    assert weights.std().item() == pytest.approx(std, rel=0.01)
    assert weights.mean().abs().item() < std / 100
    assert all(not layer.bias.any() for layer in weighted_layers(model) if layer.bias is not None)
    assert all((bn.weight == 1).all() for bn in model.modules() if isinstance(bn, nn.BatchNorm2d))


def test_normal_std_defaults_to_0_01_and_must_be_positive() -> None:
    torch.manual_seed(0)
    assert create_model("lenet5", init="normal").features.c5.weight.std().item() == pytest.approx(0.01, rel=0.05)
    with pytest.raises(ValueError, match=r"init_std must be positive, got -0\.1"):
        create_model("lenet5", init="normal", init_std=-0.1)


@pytest.mark.parametrize("name", ["lenet5", "resnet20", "googlenet_tv"])
def test_zeros_sets_every_weight_and_bias_to_zero(name: str) -> None:
    model = create_model(name, init="zeros")
    for layer in weighted_layers(model):
        assert not layer.weight.any() and (layer.bias is None or not layer.bias.any())
    assert all((bn.weight == 1).all() for bn in model.modules() if isinstance(bn, nn.BatchNorm2d))


def test_zeros_leaves_the_units_of_a_layer_identical_after_a_step() -> None:
    # the symmetry failure: every hidden unit gets the same gradient, so they never differ
    torch.manual_seed(0)
    model = create_model("lenet5", init="zeros")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(8, 1, 32, 32)), torch.randint(0, 10, (8,))).backward()
        optimizer.step()
    for layer in (model.features.c1, model.features.c5, model.features.f6):
        assert (layer.weight == layer.weight[0]).all()  # every unit (filter, row) equal to the first
    assert model.classifier.bias.any()  # the output biases do learn


def test_init_config_group_lists_every_scheme() -> None:
    files = {path.stem: OmegaConf.load(path) for path in (CONFIG_DIR / "init").glob("*.yaml")}
    assert set(files) == set(INIT_SCHEMES)
    for name, config in files.items():
        assert (CONFIG_DIR / "init" / f"{name}.yaml").read_text().startswith("# @package model\n")
        assert config == ({"init": "normal", "init_std": 0.01} if name == "normal" else {"init": name})


def test_init_group_writes_into_the_model_config(train_config) -> None:
    cfg = train_config("model=resnet20", "init=normal", "model.init_std=0.05")
    assert cfg.model.init == "normal" and cfg.model.init_std == 0.05
    assert train_config("model=vgg11", "init=sparse").model.init == "sparse"
    assert train_config("model=googlenet").model.init == "paper"  # no init= keeps the model's own


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
def test_every_scheme_trains_through_the_train_entry_point(train_config, scheme: str) -> None:
    cfg = train_config("model=lenet5", f"init={scheme}", *FAST_DATA, "data.in_channels=1")
    assert cfg.model.init == scheme
    summary = train(cfg)
    assert torch.isfinite(torch.tensor(summary["test/loss"]))
