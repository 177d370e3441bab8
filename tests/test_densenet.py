import math

import pytest
import torch
import torchvision
from torch import nn

import models.densenet  # noqa: F401
from conftest import check_torchvision_round_trip, count_parameters
from models import create_model, load_torchvision_weights

IMAGENET = ("densenet121", "densenet161", "densenet169", "densenet201")
PARAMETERS = {
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "densenet_bc_100": 769_162,  # the paper's Table 2: 0.8M
}


@pytest.mark.parametrize(("name", "count"), PARAMETERS.items())
def test_parameter_counts(name: str, count: int) -> None:
    assert count_parameters(create_model(name)) == count


def test_densenet_bc_100_has_100_layers() -> None:
    # L = 100: 3 blocks of 16 layers of 2 convolutions, the first conv, 2 transitions and the classifier
    layers = [m for m in create_model("densenet_bc_100").modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(layers) == 100


def test_forward_and_backward_at_a_small_input() -> None:
    model = create_model("densenet121", num_classes=7)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model = create_model("densenet_bc_100")
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGENET)
def test_forward_and_backward_at_224(name: str) -> None:
    model = create_model(name)
    logits = model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 1000)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_in_channels_and_num_classes() -> None:
    model = create_model("densenet_bc_100", num_classes=100, in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 100)


def test_paper_init_is_he_normal_with_unit_batch_norm() -> None:
    model = create_model("densenet121")
    conv0 = model.features.conv0.weight  # 64 x 3 x 7 x 7: std sqrt(2 / fan_in)
    assert conv0.std().item() == pytest.approx(math.sqrt(2 / (3 * 7 * 7)), rel=0.05)
    assert conv0.mean().abs().item() < 0.01
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)
    assert torch.all(model.classifier.bias == 0)


def test_init_options() -> None:
    model = create_model("densenet_bc_100", init="xavier_uniform")
    weight = model.features.conv0.weight  # 24 x 3 x 3 x 3: uniform in +-sqrt(6 / (27 + 216))
    assert weight.abs().max().item() <= math.sqrt(6 / (27 + 216))
    default = create_model("densenet_bc_100", init="torch")
    assert default.classifier.bias.abs().sum() > 0  # the constructor's bias, untouched
    with pytest.raises(ValueError, match="unknown init 'he'; accepted: paper, torch"):
        create_model("densenet_bc_100", init="he")


def test_drop_rate_follows_every_conv_but_the_first() -> None:
    model = create_model("densenet_bc_100", drop_rate=0.2)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 48 * 2 + 2  # after both convs of the 48 dense layers and the 2 transition convs
    assert all(m.p == 0.2 for m in drops)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))


@pytest.mark.parametrize("drop_rate", [-0.1, 1.0])
def test_bad_drop_rate_names_the_accepted_range(drop_rate: float) -> None:
    with pytest.raises(ValueError, match=r"drop_rate must be in \[0, 1\)"):
        create_model("densenet121", drop_rate=drop_rate)


def test_torchvision_round_trip_at_a_small_input() -> None:
    check_torchvision_round_trip("densenet121", 64)


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGENET)
def test_torchvision_round_trip(name: str) -> None:
    check_torchvision_round_trip(name, 224)


def test_other_architectures_weights_load_nothing() -> None:
    with pytest.raises(ValueError, match="nothing was loaded"):
        load_torchvision_weights(
            create_model("densenet121"), torchvision.models.squeezenet1_1(weights=None).state_dict()
        )
