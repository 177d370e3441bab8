import math
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import models.densenet  # noqa: F401
from models import create_model, load_torchvision_weights

IMAGENET = ("densenet121", "densenet161", "densenet169", "densenet201")
PARAMETERS = {
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "densenet_bc_100": 769_162,  # the paper's Table 2: 0.8M
}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def record_shapes(model: nn.Module, names: list[str]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for name in names:
        model.get_submodule(name).register_forward_hook(
            lambda module, inputs, output, name=name: shapes.__setitem__(name, tuple(output.shape[1:]))
        )
    return shapes


@pytest.mark.parametrize(("name", "count"), PARAMETERS.items())
def test_parameter_counts(name: str, count: int) -> None:
    assert count_parameters(create_model(name)) == count


def test_densenet121_stage_sizes_follow_table_1() -> None:
    model = create_model("densenet121").eval()
    stages = ["conv0", "pool0", "denseblock1", "transition1", "denseblock2", "transition2", "denseblock3"]
    stages += ["transition3", "denseblock4"]
    shapes = record_shapes(model.features, stages)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    # channels: 64 + 6 * 32 = 256 -> 128, + 12 * 32 = 512 -> 256, + 24 * 32 = 1024 -> 512, + 16 * 32 = 1024
    assert shapes == {
        "conv0": (64, 112, 112),
        "pool0": (64, 56, 56),
        "denseblock1": (256, 56, 56),
        "transition1": (128, 28, 28),
        "denseblock2": (512, 28, 28),
        "transition2": (256, 14, 14),
        "denseblock3": (1024, 14, 14),
        "transition3": (512, 7, 7),
        "denseblock4": (1024, 7, 7),
    }


def test_densenet_bc_100_stage_sizes_follow_section_3() -> None:
    model = create_model("densenet_bc_100")
    stages = ["conv0", "denseblock1", "transition1", "denseblock2", "transition2", "denseblock3"]
    shapes = record_shapes(model.features, stages)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    # 24 + 16 * 12 = 216 -> 108, + 192 = 300 -> 150, + 192 = 342
    assert shapes == {
        "conv0": (24, 32, 32),
        "denseblock1": (216, 32, 32),
        "transition1": (108, 16, 16),
        "denseblock2": (300, 16, 16),
        "transition2": (150, 8, 8),
        "denseblock3": (342, 8, 8),
    }
    # L = 100: 3 blocks of 16 layers of 2 convolutions, the first conv, 2 transitions and the classifier
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
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


@pytest.mark.parametrize(
    ("name", "size", "features"), [("densenet121", 64, (1024, 2, 2)), ("densenet_bc_100", 32, (342, 8, 8))]
)
def test_classifier_interface(name: str, size: int, features: tuple[int, int, int]) -> None:
    model = create_model(name).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, *features)
    assert model.get_classifier() is model.classifier
    model.reset_classifier(5)
    with torch.no_grad():
        assert model(x).shape == (2, 5)
    assert model.num_classes == 5


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


@pytest.mark.parametrize(("name", "size"), [("densenet121", 29), ("densenet_bc_100", 4)])
def test_min_input_size(name: str, size: int) -> None:
    model = create_model(name).eval()
    assert model.min_input_size == size
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, model.num_classes)
        with pytest.raises(ValueError, match=f"needs images of at least {size}x{size} pixels"):
            model(torch.randn(1, 3, size - 1, size - 1))
        with pytest.raises(RuntimeError, match="Output size is too small"):  # the check is not stricter than needed
            model.forward_features(torch.randn(1, 3, size - 1, size - 1))


def check_torchvision_round_trip(name: str, size: int) -> None:
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None, num_classes=10)
    ours = create_model(name, num_classes=10)
    load_torchvision_weights(ours, theirs.state_dict())
    ours.eval()
    theirs.eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


def test_torchvision_round_trip_at_a_small_input() -> None:
    check_torchvision_round_trip("densenet121", 64)


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGENET)
def test_torchvision_round_trip(name: str) -> None:
    check_torchvision_round_trip(name, 224)


def test_loading_from_a_file_and_wrong_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    theirs = torchvision.models.densenet121(weights=None)
    torch.save(theirs.state_dict(), tmp_path / "w.pth")
    ours = create_model("densenet121", pretrained=tmp_path / "w.pth")
    torch.testing.assert_close(ours.classifier.weight, theirs.classifier.weight)
    torch.testing.assert_close(
        ours.features.denseblock4.denselayer16.conv2.weight, theirs.features.denseblock4.denselayer16.conv2.weight
    )
    with pytest.raises(ValueError, match="nothing was loaded"):
        create_model("densenet169", pretrained=tmp_path / "w.pth")
    with pytest.raises(ValueError, match="nothing was loaded"):
        load_torchvision_weights(
            create_model("densenet121"), torchvision.models.squeezenet1_1(weights=None).state_dict()
        )
