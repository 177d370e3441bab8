import math

import pytest
import torch
from torch import nn

import models.squeezenet  # noqa: F401
from conftest import check_torchvision_round_trip, count_parameters
from models import create_model

NAMES = ("squeezenet1_0", "squeezenet1_1")
FIRES = [f"fire{i}" for i in range(2, 10)]


@pytest.mark.parametrize(("name", "count"), [("squeezenet1_0", 1_248_424), ("squeezenet1_1", 1_235_496)])
def test_parameter_counts(name: str, count: int) -> None:
    assert count_parameters(create_model(name)) == count
    assert count_parameters(create_model(name, bypass="simple")) == count  # the simple bypass adds no weights


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bypass", ["none", "simple"])
def test_forward_and_backward_at_224(name: str, bypass: str) -> None:
    model = create_model(name, bypass=bypass)
    logits = model(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, 1000)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_simple_bypass_adds_the_input_of_fire3_5_7_9(name: str) -> None:
    model = create_model(name, bypass="simple")
    assert [fire for fire in FIRES if model.features.get_submodule(fire).bypass] == ["fire3", "fire5", "fire7", "fire9"]
    fire3 = model.features.fire3
    x = torch.randn(1, 128, 9, 9)
    fire3.bypass = False
    plain = fire3(x)
    fire3.bypass = True
    torch.testing.assert_close(fire3(x), plain + x)
    assert not any(create_model(name).features.get_submodule(fire).bypass for fire in FIRES)


@pytest.mark.parametrize("name", NAMES)
def test_the_classifier_is_the_conv10_layer(name: str) -> None:
    model = create_model(name)
    assert model.classifier_path == "classifier.conv10"
    assert isinstance(model.get_classifier(), nn.Conv2d)
    model.reset_classifier(5)
    assert model.get_classifier().out_channels == 5


def test_in_channels_and_num_classes() -> None:
    model = create_model("squeezenet1_1", num_classes=10, in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_paper_init_follows_torchvision() -> None:
    model = create_model("squeezenet1_0")
    assert model.classifier.conv10.weight.std().item() == pytest.approx(0.01, rel=0.05)
    conv1 = model.features.conv1.weight  # He uniform: bound sqrt(6 / fan_in)
    bound = math.sqrt(6 / (3 * 7 * 7))
    assert conv1.abs().max().item() <= bound
    assert conv1.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert all(torch.all(m.bias == 0) for m in model.modules() if isinstance(m, nn.Conv2d))


def test_init_options() -> None:
    model = create_model("squeezenet1_1", init="xavier_normal")
    assert model.classifier.conv10.weight.std().item() == pytest.approx(math.sqrt(2 / (512 + 1000)), rel=0.05)
    assert create_model("squeezenet1_1", init="torch").features.conv1.bias.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown init 'he'; accepted: paper, torch"):
        create_model("squeezenet1_1", init="he")


def test_bad_options_name_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="unknown bypass 'complex'; accepted: none, simple"):
        create_model("squeezenet1_0", bypass="complex")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        create_model("squeezenet1_0", dropout=1.5)
    assert create_model("squeezenet1_1", dropout=0.2).classifier.dropout.p == 0.2


@pytest.mark.parametrize("name", NAMES)
def test_torchvision_round_trip(name: str) -> None:
    check_torchvision_round_trip(name, 224)
