"""Pre-activation ResNet (He et al. 2016, "Identity Mappings"): the parameter counts worked out from the paper's
tables, its rounded figures, timm's resnetv2 weights giving the same outputs, the order of the full pre-activation
unit, the shortcuts, the strides, and the options."""

import inspect
import math
import re

import pytest
import torch
from torch import nn

from conftest import assert_same_outputs, build_on_meta, check_model_config, count_parameters
from models import create_model, get_model_builder
from models.preact_resnet import CifarPreActResNet, PreActBottleneck, PreActResNet
from models.summary import summarize

CIFAR = {
    "preact_resnet164": ("bottleneck", 18),
    "preact_resnet1001": ("bottleneck", 111),
    "preact_resnet110": ("basic", 18),
}
IMAGENET = {
    "preact_resnet18": ("basic", (2, 2, 2, 2)),
    "preact_resnet34": ("basic", (3, 4, 6, 3)),
    "preact_resnet50": ("bottleneck", (3, 4, 6, 3)),
    "preact_resnet101": ("bottleneck", (3, 4, 23, 3)),
    "preact_resnet152": ("bottleneck", (3, 8, 36, 3)),
    "preact_resnet200": ("bottleneck", (3, 24, 36, 3)),
}

# ResNet-164 by hand (Section 4: n = 18 bottleneck units a stage, bottleneck widths 16, 32, 64, outputs 64, 128, 256;
# convs without bias, a batch norm has a scale and a shift a channel, projections are a 1x1 conv alone):
PREACT_164 = sum(
    [
        # conv1: 3x3, 3 -> 16: 432
        3 * 16 * 9,
        # layer1, unit 1: BN(16), 1x1 16 -> 16, BN(16), 3x3 16 -> 16, BN(16), 1x1 16 -> 64, projection 16 -> 64: 4,704
        2 * 16 + 16 * 16 + 2 * 16 + 16 * 16 * 9 + 2 * 16 + 16 * 64 + 16 * 64,
        # layer1, units 2-18: BN(64), 1x1 64 -> 16, BN(16), 3x3 16 -> 16, BN(16), 1x1 16 -> 64: 17 x 4,544
        17 * (2 * 64 + 64 * 16 + 2 * 16 + 16 * 16 * 9 + 2 * 16 + 16 * 64),
        # layer2, unit 1: BN(64), 1x1 64 -> 32, BN(32), 3x3 32 -> 32 stride 2, BN(32), 1x1 32 -> 128, projection
        # 64 -> 128: 23,808
        2 * 64 + 64 * 32 + 2 * 32 + 32 * 32 * 9 + 2 * 32 + 32 * 128 + 64 * 128,
        # layer2, units 2-18: 17 x 17,792
        17 * (2 * 128 + 128 * 32 + 2 * 32 + 32 * 32 * 9 + 2 * 32 + 32 * 128),
        # layer3, unit 1: BN(128), 1x1 128 -> 64, BN(64), 3x3 64 -> 64 stride 2, BN(64), 1x1 64 -> 256, projection
        # 128 -> 256: 94,720
        2 * 128 + 128 * 64 + 2 * 64 + 64 * 64 * 9 + 2 * 64 + 64 * 256 + 128 * 256,
        # layer3, units 2-18: 17 x 70,400
        17 * (2 * 256 + 256 * 64 + 2 * 64 + 64 * 64 * 9 + 2 * 64 + 64 * 256),
        # the final BN(256), the classifier 256 -> 10: 3,082
        2 * 256 + 256 * 10 + 10,
    ]
)


def counted_by_hand(block: str, stages: list[tuple[int, int, int]], stem: int, classes: int, bn: int = 2) -> int:
    """Any pre-activation ResNet: the stem conv's ``stem`` weights, then per stage (units, input width, bottleneck
    width): each unit a BN on its input and its convs (1x1, 3x3, 1x1 of a 4x bottleneck, or 3x3, 3x3), each inner
    conv followed by a BN, a projection 1x1 where the width or stride changes; the final BN; the classifier. ``bn``
    is the parameters a BN has a channel (0 counts the weights alone)."""
    total, first_stage = stem, True
    for units, in_channels, width in stages:
        out = 4 * width if block == "bottleneck" else width
        for unit in range(units):
            unit_in = in_channels if unit == 0 else out
            if block == "bottleneck":
                total += bn * unit_in + unit_in * width + bn * width + width * width * 9 + bn * width + width * out
            else:
                total += bn * unit_in + unit_in * out * 9 + bn * out + out * out * 9
            projects = unit == 0 and (unit_in != out or not first_stage)  # the later stages' first unit strides
            total += unit_in * out if projects else 0
        first_stage = False
    return total + bn * out + out * classes + classes


def cifar_by_hand(name: str, classes: int = 10, bn: int = 2) -> int:
    block, n = CIFAR[name]
    outs = (64, 128, 256) if block == "bottleneck" else (16, 32, 64)
    stages = [(n, 16, 16), (n, outs[0], 32), (n, outs[1], 64)]
    return counted_by_hand(block, stages, 3 * 16 * 9, classes, bn)


def imagenet_by_hand(name: str, classes: int = 1000) -> int:
    block, layers = IMAGENET[name]
    outs = [64 * (4 if block == "bottleneck" else 1) * 2**i for i in range(4)]
    stages = [(layers[i], 64 if i == 0 else outs[i - 1], 64 * 2**i) for i in range(4)]
    return counted_by_hand(block, stages, 3 * 64 * 7 * 7, classes)


def test_resnet_164_counted_by_hand_is_the_papers_1_7m() -> None:
    assert PREACT_164 == cifar_by_hand("preact_resnet164") == 1_703_258
    assert count_parameters(build_on_meta("preact_resnet164")) == PREACT_164
    assert round(PREACT_164 / 1e6, 1) == 1.7  # Table 3


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) if name == "preact_resnet1001" else name for name in CIFAR]
)
def test_cifar_parameter_counts(name: str) -> None:
    model = build_on_meta(name)  # ResNet-1001's 3,000 layers take seconds even on the meta device: build it once
    count = count_parameters(model)
    assert count == cifar_by_hand(name)
    model.reset_classifier(100)
    assert count_parameters(model) == cifar_by_hand(name, 100)
    assert f"{count:,} parameters" in inspect.getdoc(get_model_builder(name))


def test_the_papers_rounded_figures() -> None:
    # ResNet-110 (basic units, 1x1 projections): 1,730,522, Table 3's 1.7M
    assert cifar_by_hand("preact_resnet110") == 1_730_522
    # ResNet-1001: 10,327,706 in all rounds to 10.3M; the paper's 10.2M (Table 4) is the count of the conv and fc
    # parameters without the batch norms' scales and shifts, 10,178,490 (ResNet-164 so: 1,679,034, also 1.7M)
    assert cifar_by_hand("preact_resnet1001") == 10_327_706
    assert cifar_by_hand("preact_resnet1001", bn=0) == 10_178_490 and round(10_178_490 / 1e6, 1) == 10.2
    assert cifar_by_hand("preact_resnet164", bn=0) == 1_679_034


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_parameter_counts(name: str) -> None:
    # ResNet-50: torchvision's resnet50 (25,557,032) less the stem's BN (128), the projections' BNs (2 x 3,840) and
    # the narrower first BN of each stage's first unit (its input, not its output: 2 x (192 + 256 + 512 + 1024)),
    # plus the final BN (2 x 2048): 25,549,352, timm's resnetv2_50
    if name == "preact_resnet50":
        assert 25_557_032 - 128 - 2 * 3_840 - 2 * (192 + 256 + 512 + 1024) + 2 * 2048 == 25_549_352
    count = count_parameters(build_on_meta(name))
    assert count == imagenet_by_hand(name)
    assert f"{count:,} parameters" in inspect.getdoc(get_model_builder(name))


def timm_to_ours(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's resnetv2 names in ours: stem.conv -> conv1, stages.i.blocks.j -> layer{i+1}.j, normK -> bnK,
    downsample.conv -> shortcut, norm -> bn, head.fc (a 1x1 conv) -> fc (a linear layer)."""
    converted = {}
    for key, value in state_dict.items():
        key = re.sub(r"^stages\.(\d)\.blocks\.", lambda m: f"layer{int(m[1]) + 1}.", key)
        key = re.sub(r"\.norm(\d)\.", r".bn\1.", key).replace(".downsample.conv.", ".shortcut.")
        key = re.sub(r"^stem\.conv\.", "conv1.", re.sub(r"^norm\.", "bn.", re.sub(r"^head\.fc\.", "fc.", key)))
        converted[key] = value.flatten(1) if key == "fc.weight" else value
    return converted


@pytest.mark.parametrize("name", ["resnetv2_18", "resnetv2_50"])
def test_timm_resnetv2_weights_give_the_same_outputs(name: str) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    theirs = timm.create_model(name, num_classes=10)
    with torch.no_grad():  # random weights and statistics everywhere (timm starts each unit's last conv at zero)
        for key, tensor in theirs.state_dict().items():
            if key.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif tensor.is_floating_point():
                tensor.normal_(0, 0.05)
    ours = create_model(name.replace("resnetv2_", "preact_resnet"), num_classes=10)
    ours.load_state_dict(timm_to_ours(theirs.state_dict()))  # strict: every key, every shape
    assert count_parameters(ours) == count_parameters(theirs)
    assert_same_outputs(ours, theirs, torch.randn(2, 3, 32, 32))


def test_multiply_adds_are_those_of_the_original_resnet() -> None:
    # the same convolutions and classifier as torchvision's resnet18 (1.814 G), only the batch norms moved
    ours, original = (
        summarize(create_model("preact_resnet18"), (3, 224, 224)),
        summarize(create_model("resnet18"), (3, 224, 224)),
    )
    assert ours.macs == original.macs and round(ours.macs / 1e9, 3) == 1.814


def test_bottleneck_unit_is_full_pre_activation() -> None:
    unit = PreActBottleneck(8, 32, 2, "relu", "batch")
    order = []
    for name, module in unit.named_children():
        module.register_forward_hook(lambda module, args, out, name=name: order.append(name))
    unit(torch.randn(2, 8, 6, 6))
    # Fig. 4(e): BN-ReLU-conv three times; the projection reads the shared first BN-ReLU
    assert order == ["bn1", "act1", "conv1", "bn2", "act2", "conv2", "bn3", "act3", "conv3", "shortcut"]
    assert unit.conv2.stride == (2, 2) and unit.conv1.stride == (1, 1) and unit.shortcut.stride == (2, 2)
    assert (unit.conv1.out_channels, unit.conv3.out_channels) == (8, 32)


def test_unit_adds_the_branch_with_nothing_after_the_sum() -> None:
    torch.manual_seed(0)
    unit = PreActBottleneck(8, 8, 1, "relu", "batch").eval()
    assert unit.shortcut is None  # the identity where the shape is kept
    x = torch.randn(2, 8, 5, 5)
    branch = unit.conv3(unit.act3(unit.bn3(unit.conv2(unit.act2(unit.bn2(unit.conv1(unit.act1(unit.bn1(x)))))))))
    out = unit(x)
    torch.testing.assert_close(out, branch + x)
    assert (out < 0).any()  # Eq. 4: no ReLU after the addition
    projecting = PreActBottleneck(8, 16, 1, "relu", "batch").eval()
    activated = projecting.act1(projecting.bn1(x.clone()))
    torch.testing.assert_close(projecting(x), projecting.conv3(projecting.act3(projecting.bn3(projecting.conv2(
        projecting.act2(projecting.bn2(projecting.conv1(activated))))))) + projecting.shortcut(activated))  # fmt: skip


def test_projections_where_the_width_or_the_stride_changes() -> None:
    cifar = build_on_meta("preact_resnet164")
    for stage, (in_channels, out, stride) in zip(
        (cifar.layer1, cifar.layer2, cifar.layer3), [(16, 64, 1), (64, 128, 2), (128, 256, 2)], strict=True
    ):
        projection = stage[0].shortcut
        assert (projection.in_channels, projection.out_channels, projection.stride) == (in_channels, out, (stride,) * 2)
        assert projection.kernel_size == (1, 1) and projection.bias is None
        assert all(unit.shortcut is None for unit in stage[1:])
    basic = build_on_meta("preact_resnet110")
    assert basic.layer1[0].shortcut is None and basic.layer2[0].shortcut.out_channels == 32  # 16 -> 16: identity
    imagenet = build_on_meta("preact_resnet18")
    assert imagenet.layer1[0].shortcut is None and imagenet.layer4[0].shortcut.stride == (2, 2)
    # no BN-ReLU between conv1 and the first unit: that unit's shared one is the first activation (the appendix)
    assert [name for name, _ in imagenet.named_children()][:3] == ["conv1", "maxpool", "layer1"]


def test_stride_on_1x1_moves_the_stride_and_keeps_the_shapes() -> None:
    default, moved = build_on_meta("preact_resnet50"), build_on_meta("preact_resnet50", stride_on_1x1=True)
    assert (moved.layer2[0].conv1.stride, moved.layer2[0].conv2.stride) == ((2, 2), (1, 1))
    assert (default.layer2[0].conv1.stride, default.layer2[0].conv2.stride) == ((1, 1), (2, 2))
    assert {k: v.shape for k, v in moved.state_dict().items()} == {k: v.shape for k, v in default.state_dict().items()}
    with pytest.raises(ValueError, match=r"^stride_on_1x1 applies to bottleneck units only"):
        CifarPreActResNet("basic", 110, stride_on_1x1=True)
    with pytest.raises(TypeError, match="preact_resnet18 takes no argument 'stride_on_1x1'"):
        create_model("preact_resnet18", stride_on_1x1=True)


@pytest.mark.parametrize(
    ("block", "depth", "message"),
    [
        ("bottleneck", 165, r"^depth of bottleneck units must be 9n \+ 2 with n >= 1 \(11, 20, 29, .*\), got 165$"),
        ("bottleneck", 2, r"^depth of bottleneck units must be 9n \+ 2"),
        ("basic", 111, r"^depth of basic units must be 6n \+ 2 with n >= 1 \(8, 14, 20, \.\.\., 110\), got 111$"),
        ("basic", 110.0, r"^depth of basic units must be 6n \+ 2"),
        ("wide", 110, r"^unknown block 'wide'; accepted: basic, bottleneck$"),
    ],
)
def test_bad_architectures_are_refused_in_one_line(block: str, depth: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CifarPreActResNet(block, depth)


def test_small_network_trains_every_parameter_and_keeps_the_interface() -> None:
    torch.manual_seed(0)
    model = CifarPreActResNet("bottleneck", 11, num_classes=4, in_channels=1, norm="group", activation="elu")
    assert len(model.layer1) == len(model.layer2) == len(model.layer3) == 1  # 9n + 2 = 11: n = 1
    x = torch.randn(2, 1, 16, 16)
    assert model.forward_features(x).shape == (2, 256, 4, 4)
    model(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert model.get_classifier() is model.fc
    model.reset_classifier(5)
    assert model(torch.randn(1, 1, 1, 1)).shape == (1, 5)  # padded convs: any size down to 1x1
    assert isinstance(model.act, nn.ELU) and isinstance(model.bn, nn.GroupNorm)
    with pytest.raises(ValueError, match=r"^norm='none' is not available for PreActResNet; accepted: batch, group"):
        PreActResNet("basic", (1, 1, 1, 1), norm="none")


def test_paper_init_is_he_normal_with_fan_out_and_identity_batch_norms() -> None:
    torch.manual_seed(0)
    model = create_model("preact_resnet164")
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.weight.numel() >= 16_384:  # enough weights for a close estimate
            fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
            assert module.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.05), name
        elif isinstance(module, nn.BatchNorm2d):
            assert (module.weight == 1).all() and (module.bias == 0).all(), name
    assert (model.fc.bias == 0).all()  # the authors' code zeroes the classifier's bias


@pytest.mark.parametrize("name", [*CIFAR, *IMAGENET])
def test_config_lists_every_option_with_its_default(name: str) -> None:
    check_model_config(name)
