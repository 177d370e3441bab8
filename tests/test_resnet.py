import math
from pathlib import Path

import pytest
import torch
import torchvision

import models.resnet  # noqa: F401
from conftest import check_model_config, count_parameters, record_output_shapes
from models import INIT_SCHEMES, create_model, load_torchvision_weights
from models.resnet import BasicBlock, Bottleneck, ResNet, ZeroPadShortcut

# Exact parameter counts: ImageNet networks for 1000 classes (torchvision's), CIFAR networks for 10 classes.
IMAGENET_PARAMETERS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
CIFAR_PARAMETERS = {
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
}
# Option B adds two projections: 1x1 16->32 + BN (512 + 64) and 1x1 32->64 + BN (2,048 + 128).
PROJECTION_PARAMETERS = 2_752
BOTTLENECK = {"resnet50", "resnet101", "resnet152"}
SLOW = {"resnet101", "resnet152"}  # 224x224 passes of several seconds on a CPU
IMAGENET = [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in IMAGENET_PARAMETERS]


@pytest.mark.parametrize("name", list(IMAGENET_PARAMETERS))
def test_imagenet_parameter_counts(name: str) -> None:
    assert count_parameters(create_model(name)) == IMAGENET_PARAMETERS[name]


@pytest.mark.parametrize("name", list(CIFAR_PARAMETERS))
def test_cifar_parameter_counts(name: str) -> None:
    assert count_parameters(create_model(name)) == CIFAR_PARAMETERS[name]
    assert count_parameters(create_model(name, shortcut="B")) == CIFAR_PARAMETERS[name] + PROJECTION_PARAMETERS


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_forward_backward_follows_table_1(name: str) -> None:
    model = create_model(name)
    shapes = record_output_shapes(model, ["conv1", "maxpool", "layer1", "layer2", "layer3", "layer4"])
    logits = model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 1000)
    e = 4 if name in BOTTLENECK else 1  # channel expansion of the bottleneck
    assert shapes == {
        "conv1": (64, 112, 112),
        "maxpool": (64, 56, 56),
        "layer1": (64 * e, 56, 56),
        "layer2": (128 * e, 28, 28),
        "layer3": (256 * e, 14, 14),
        "layer4": (512 * e, 7, 7),
    }
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", list(CIFAR_PARAMETERS))
def test_cifar_forward_backward_follows_section_4_2(name: str) -> None:
    model = create_model(name)
    shapes = record_output_shapes(model, ["conv1", "layer1", "layer2", "layer3"])
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert shapes == {"conv1": (16, 32, 32), "layer1": (16, 32, 32), "layer2": (32, 16, 16), "layer3": (64, 8, 8)}
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_option_a_shortcut_subsamples_and_pads_with_zeros() -> None:
    model = create_model("resnet20")
    assert model.layer1[0].downsample is None  # same shape: identity
    shortcut = model.layer2[0].downsample
    assert isinstance(shortcut, ZeroPadShortcut) and count_parameters(shortcut) == 0
    x = torch.randn(2, 16, 32, 32)
    out = shortcut(x)
    assert out.shape == (2, 32, 16, 16)
    torch.testing.assert_close(out[:, :16], x[:, :, ::2, ::2])
    assert not out[:, 16:].any()
    assert shortcut(torch.randn(1, 16, 5, 5)).shape == (1, 32, 3, 3)  # rounds up, as the 3x3 stride-2 conv does


def test_option_b_shortcut_is_a_projection() -> None:
    model = create_model("resnet20", shortcut="B")
    conv, bn = model.layer2[0].downsample
    assert (conv.kernel_size, conv.stride, conv.out_channels) == ((1, 1), (2, 2), 32)
    assert isinstance(bn, torch.nn.BatchNorm2d)
    model(torch.randn(2, 3, 32, 32)).sum().backward()


@pytest.mark.parametrize("name", IMAGENET)
def test_torchvision_weights_give_equal_outputs(name: str) -> None:
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None)
    ours = load_torchvision_weights(create_model(name), reference.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x), atol=1e-5, rtol=1e-5)


def test_weights_load_from_a_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    ours = create_model("resnet18", pretrained=tmp_path / "w.pth")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("source", "target"), [("resnet18", "resnet34"), ("resnet18", "resnet20")])
def test_weights_of_another_architecture_are_refused(source: str, target: str) -> None:
    state_dict = getattr(torchvision.models, source)(weights=None).state_dict()
    with pytest.raises(ValueError, match="nothing was loaded"):
        load_torchvision_weights(create_model(target), state_dict)


def test_stride_on_1x1_moves_the_stride_and_keeps_the_weights() -> None:
    torch.manual_seed(0)
    model = create_model("resnet50", stride_on_1x1=True)
    first = model.layer2[0]
    assert (first.conv1.stride, first.conv2.stride, first.downsample[0].stride) == ((2, 2), (1, 1), (2, 2))
    assert model.layer2[1].conv1.stride == (1, 1)
    assert count_parameters(model) == IMAGENET_PARAMETERS["resnet50"]
    reference = torchvision.models.resnet50(weights=None)
    load_torchvision_weights(model, reference.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = model.eval()(x), reference.eval()(x)
    assert ours.shape == theirs.shape and not torch.allclose(ours, theirs)


def test_stride_on_1x1_is_refused_for_basic_blocks() -> None:
    with pytest.raises(ValueError, match="stride_on_1x1 applies to bottleneck blocks only"):
        ResNet(BasicBlock, (2, 2, 2, 2), stride_on_1x1=True)


@pytest.mark.parametrize(("name", "size", "features"), [("resnet18", 64, (512, 2, 2)), ("resnet20", 32, (64, 8, 8))])
def test_classifier_interface(name: str, size: int, features: tuple[int, int, int]) -> None:
    model = create_model(name, in_channels=1)
    x = torch.randn(2, 1, size, size)
    assert model.forward_features(x).shape == (2, *features)
    assert model.get_classifier() is model.fc
    model.reset_classifier(5)
    assert model(x).shape == (2, 5)
    assert model.num_classes == 5


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet20"])
def test_min_input_size(name: str) -> None:
    model = create_model(name)
    size = model.min_input_size
    assert size == 1  # every conv and pool is padded: a 1x1 image stays 1x1 down to the global pool
    assert model(torch.randn(2, 3, size, size)).shape[0] == 2
    with pytest.raises(ValueError, match=f"needs images of at least {size}x{size} pixels"):
        model(torch.randn(2, 3, size - 1, size - 1))


def test_paper_init_is_he_normal_with_fan_out() -> None:
    torch.manual_seed(0)
    model = create_model("resnet18")
    conv = model.layer4[1].conv2  # 512 x 512 x 3 x 3 weights
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.02)
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all((bn.weight == 1).all() and (bn.bias == 0).all() for bn in batch_norms)
    torch_default = create_model("resnet18", init="torch").layer4[1].conv2
    assert torch_default.weight.std().item() == pytest.approx(1 / math.sqrt(3 * conv.in_channels * 9), rel=0.02)


@pytest.mark.parametrize("init", ["paper", "kaiming_normal"])
def test_zero_init_residual_zeroes_the_last_batch_norm_of_each_branch(init: str) -> None:
    for name, block_type, last in (("resnet18", BasicBlock, "bn2"), ("resnet50", Bottleneck, "bn3")):
        model = create_model(name, zero_init_residual=True, init=init)
        blocks = [m for m in model.modules() if isinstance(m, block_type)]
        assert blocks and all((getattr(block, last).weight == 0).all() for block in blocks)
        assert (model.layer1[0].bn1.weight == 1).all()
    assert (create_model("resnet18").layer1[0].bn2.weight == 1).all()  # off by default, as in torchvision


@pytest.mark.parametrize("init", INIT_SCHEMES)
def test_every_init_scheme_builds(init: str) -> None:
    model = create_model("resnet20", init=init)
    assert torch.isfinite(model(torch.randn(2, 3, 32, 32))).all()


def test_bad_options_name_the_accepted_values() -> None:
    with pytest.raises(ValueError, match="unknown shortcut 'C'; accepted: A, B"):
        create_model("resnet20", shortcut="C")
    with pytest.raises(ValueError, match="unknown init 'he'; accepted: paper, torch"):
        create_model("resnet18", init="he")
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        create_model("resnet50", num_classes=0)
    with pytest.raises(TypeError, match="resnet18 takes no argument 'stride_on_1x1'"):
        create_model("resnet18", stride_on_1x1=True)


@pytest.mark.parametrize("name", [*IMAGENET_PARAMETERS, *CIFAR_PARAMETERS])
def test_config_lists_every_knob_with_its_default(name: str) -> None:
    check_model_config(name)
