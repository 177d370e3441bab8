import math
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import models.squeezenet  # noqa: F401
from models import create_model, load_torchvision_weights

NAMES = ("squeezenet1_0", "squeezenet1_1")
FIRES = [f"fire{i}" for i in range(2, 10)]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def record_shapes(model: nn.Module, names: list[str]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for name in names:
        model.get_submodule(name).register_forward_hook(
            lambda module, inputs, output, name=name: shapes.__setitem__(name, tuple(output.shape[1:]))
        )
    return shapes


@pytest.mark.parametrize(("name", "count"), [("squeezenet1_0", 1_248_424), ("squeezenet1_1", 1_235_496)])
def test_parameter_counts(name: str, count: int) -> None:
    assert count_parameters(create_model(name)) == count
    assert count_parameters(create_model(name, bypass="simple")) == count  # the simple bypass adds no weights


def test_squeezenet1_0_sizes_follow_table_1() -> None:
    # Table 1's sizes are those of the authors' 227x227 crops
    model = create_model("squeezenet1_0")
    layers = [f"features.{name}" for name in ["conv1", "maxpool1", *FIRES, "maxpool4", "maxpool8"]]
    shapes = record_shapes(model, [*layers, "classifier.conv10", "classifier.avgpool10"])
    with torch.no_grad():
        assert model(torch.randn(1, 3, 227, 227)).shape == (1, 1000)
    assert {name.split(".")[1]: shape for name, shape in shapes.items()} == {
        "conv1": (96, 111, 111),
        "maxpool1": (96, 55, 55),
        "fire2": (128, 55, 55),
        "fire3": (128, 55, 55),
        "fire4": (256, 55, 55),
        "maxpool4": (256, 27, 27),
        "fire5": (256, 27, 27),
        "fire6": (384, 27, 27),
        "fire7": (384, 27, 27),
        "fire8": (512, 27, 27),
        "maxpool8": (512, 13, 13),
        "fire9": (512, 13, 13),
        "conv10": (1000, 13, 13),
        "avgpool10": (1000, 1, 1),
    }


def test_squeezenet1_1_sizes_at_224() -> None:
    model = create_model("squeezenet1_1")
    shapes = record_shapes(model.features, ["conv1", "maxpool1", "fire3", "maxpool3", "fire5", "maxpool5", "fire9"])
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    assert shapes == {
        "conv1": (64, 111, 111),
        "maxpool1": (64, 55, 55),
        "fire3": (128, 55, 55),
        "maxpool3": (128, 27, 27),
        "fire5": (256, 27, 27),
        "maxpool5": (256, 13, 13),
        "fire9": (512, 13, 13),
    }


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
def test_classifier_interface(name: str) -> None:
    model = create_model(name).eval()
    x = torch.randn(2, 3, 64, 64)
    assert model.classifier_path == "classifier.conv10"
    assert model.get_classifier() is model.classifier.conv10
    assert isinstance(model.get_classifier(), nn.Conv2d)
    with torch.no_grad():
        assert model.forward_features(x).shape[:2] == (2, 512)
    model.reset_classifier(5)
    assert model.get_classifier().out_channels == 5
    with torch.no_grad():
        assert model(x).shape == (2, 5)
    assert model.num_classes == 5


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


@pytest.mark.parametrize(("name", "size"), [("squeezenet1_0", 21), ("squeezenet1_1", 17)])
def test_min_input_size(name: str, size: int) -> None:
    model = create_model(name).eval()
    assert model.min_input_size == size
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 1000)
        with pytest.raises(ValueError, match=f"needs images of at least {size}x{size} pixels"):
            model(torch.randn(1, 3, size - 1, size - 1))
        with pytest.raises(RuntimeError, match="Output size is too small"):  # the check is not stricter than needed
            model.forward_features(torch.randn(1, 3, size - 1, size - 1))


@pytest.mark.parametrize("name", NAMES)
def test_torchvision_round_trip(name: str) -> None:
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None, num_classes=10)
    ours = create_model(name, num_classes=10)
    load_torchvision_weights(ours, theirs.state_dict())
    ours.eval()
    theirs.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


def test_loading_from_a_file_and_wrong_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    theirs = torchvision.models.squeezenet1_1(weights=None)
    torch.save(theirs.state_dict(), tmp_path / "w.pth")
    ours = create_model("squeezenet1_1", pretrained=tmp_path / "w.pth")
    torch.testing.assert_close(ours.features.fire4.expand3x3.weight, theirs.features[6].expand3x3.weight)
    torch.testing.assert_close(ours.classifier.conv10.bias, theirs.classifier[1].bias)
    with pytest.raises(ValueError, match="nothing was loaded"):
        create_model("squeezenet1_0", pretrained=tmp_path / "w.pth")
