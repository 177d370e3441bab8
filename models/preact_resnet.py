"""Pre-activation ResNet: residual units whose branch is BN-ReLU-conv, with nothing after the addition.

K. He, X. Zhang, S. Ren, J. Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016 (arXiv:1603.05027).

The full pre-activation unit, Fig. 4(e): x_{l+1} = x_l + F(x_l), the branch F a stack of BN-ReLU-conv, so the
shortcut carries the signal from any unit to any other untouched (Eq. 4). The bottleneck unit is BN-ReLU-conv1x1,
BN-ReLU-conv3x3, BN-ReLU-conv1x1 with a 4x expansion; the basic unit BN-ReLU-conv3x3 twice. Where the width or the
stride changes the shortcut is a 1x1 projection convolution and, as in the authors' code (resnet-pre-act.lua), the
unit's first BN-ReLU is shared by both paths: the projection reads the pre-activated input. Appendix: "for the first
Residual Unit (that follows a stand-alone convolutional layer, conv1), we adopt the first activation right after
conv1 and before splitting into two paths; for the last Residual Unit ... we adopt an extra activation right after its
element-wise addition", that is a BN-ReLU before the global average pool. Convolutions have no bias (each feeds a
batch norm or a sum).

CIFAR networks, Section 4 and Table 3/4 (3x32x32 input; bottleneck units, depth 9n + 2: three stages of n units of
three convs, conv1 and the classifier; bottleneck widths 16, 32, 64, unit outputs 64, 128, 256):

    conv1     32x32    3x3, 16
    layer1    32x32    [1x1, 16; 3x3, 16; 1x1, 64]    x n
    layer2    16x16    [1x1, 32; 3x3, 32; 1x1, 128]   x n      (stride 2 in the first unit)
    layer3     8x8     [1x1, 64; 3x3, 64; 1x1, 256]   x n      (stride 2 in the first unit)
    bn, act    8x8     BN-ReLU
    fc         1x1     global average pool, 10-d fc

ResNet-164 (n = 18): 1.7M parameters, 5.46% CIFAR-10 error (Table 3); ResNet-1001 (n = 111): 10.2M, 4.92% (Table 4).
The pre-activation ResNet-110 of Table 3 (6.37%, 1.7M) has basic units, depth 6n + 2 with n = 18, widths 16, 32, 64.

ImageNet networks, Section 5 and Table 5 (ResNet-152 and ResNet-200 with pre-activation units): the stages of
He et al. 2016a's Table 1 (``models.resnet``), the units pre-activated:

    conv1    112x112   7x7, 64, stride 2
    maxpool   56x56    3x3 max pool, stride 2
    layer1    56x56    units of 64 (basic) or [1x1, 64; 3x3, 64; 1x1, 256] (bottleneck)   x n1
    layer2    28x28    units of 128 or [1x1, 128; 3x3, 128; 1x1, 512]                        x n2
    layer3    14x14    units of 256 or [1x1, 256; 3x3, 256; 1x1, 1024]                       x n3
    layer4     7x7     units of 512 or [1x1, 512; 3x3, 512; 1x1, 2048]                       x n4
    bn, act    7x7     BN-ReLU
    fc         1x1     global average pool, 1000-d fc

(n1, n2, n3, n4) = (2, 2, 2, 2) for 18 layers, (3, 4, 6, 3) for 34 and 50, (3, 4, 23, 3) for 101, (3, 8, 36, 3) for
152 and (3, 24, 36, 3) for 200 (Table 5's deepest). The first activation "right after conv1 and before splitting" is
the first unit's shared BN-ReLU, after the max pool, as in timm's ``resnetv2_*`` (whose weights load into these
networks with the same outputs); layer names follow ``models.resnet``'s.

The stride of a bottleneck is on its 3x3 conv, as in torchvision's and timm's ResNets; ``stride_on_1x1=True`` puts it
on the first 1x1 conv, as the authors' Lua code does. The basic unit is ``models.wide_resnet.WideBasicBlock`` (its
dropout off): a WRN-d-1 is the basic pre-activation ResNet.

``activation`` replaces every ReLU (``act1``, ``act2``, ``act3`` in a unit, ``act`` before the pool), ``norm`` every
batch norm: ``batch`` (the paper's), ``group`` or ``layer``; ``none`` is refused, as for ResNet.

Initialisation (``init="paper"``): convs as He et al. 2015 (normal with variance 2/fan_out), batch norms to the
identity, the classifier's bias zero, as the authors' code (fb.resnet.torch) does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models._activations import make_activation
from models._base import ClassifierNet
from models._norms import make_norm
from models._registry import register_model
from models._stochastic_depth import ResidualBlock, add_stochastic_depth
from models.resnet import ResNet, init_resnet
from models.wide_resnet import WideBasicBlock

BLOCKS = ("basic", "bottleneck")
EXPANSION = {"basic": 1, "bottleneck": 4}  # a unit's output width over its bottleneck (inner) width


class PreActBottleneck(ResidualBlock):
    """Fig. 4(e) on a bottleneck: conv3(act3(bn3(conv2(act2(bn2(conv1(act1(bn1(x))))))))) + shortcut, the projection
    (where the shape changes) reading act1(bn1(x))."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        activation: str,
        norm: str,
        stride_on_1x1: bool = False,
    ) -> None:
        super().__init__()
        inner = out_channels // EXPANSION["bottleneck"]
        stride_1x1, stride_3x3 = (stride, 1) if stride_on_1x1 else (1, stride)
        self.bn1 = make_norm(norm, in_channels)
        self.act1 = make_activation(activation, in_channels, inplace=True)
        self.conv1 = nn.Conv2d(in_channels, inner, kernel_size=1, stride=stride_1x1, bias=False)
        self.bn2 = make_norm(norm, inner)
        self.act2 = make_activation(activation, inner, inplace=True)
        self.conv2 = nn.Conv2d(inner, inner, kernel_size=3, stride=stride_3x3, padding=1, bias=False)
        self.bn3 = make_norm(norm, inner)
        self.act3 = make_activation(activation, inner, inplace=True)
        self.conv3 = nn.Conv2d(inner, out_channels, kernel_size=1, bias=False)
        # the 1x1 projection where the shape changes; None is the identity
        projects = in_channels != out_channels or stride != 1
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False) if projects else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.act1(self.bn1(x))
        out = self.conv2(self.act2(self.bn2(self.conv1(activated))))
        out = self.conv3(self.act3(self.bn3(out)))
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        return self.drop_residual(out) + shortcut  # Eq. 4: no activation after the sum


def make_preact_stage(
    block: str,
    in_channels: int,
    out_channels: int,
    num_blocks: int,
    stride: int,
    activation: str,
    norm: str,
    stride_on_1x1: bool,
) -> nn.Sequential:
    """``num_blocks`` pre-activation units of ``out_channels`` outputs; the first takes the stride and the change of
    width (and projects its shortcut)."""
    units = []
    for i in range(num_blocks):
        unit_in, unit_stride = (in_channels, stride) if i == 0 else (out_channels, 1)
        if block == "basic":
            units.append(WideBasicBlock(unit_in, out_channels, unit_stride, 0.0, activation, norm))
        else:
            units.append(PreActBottleneck(unit_in, out_channels, unit_stride, activation, norm, stride_on_1x1))
    return nn.Sequential(*units)


def check_block(block: str, stride_on_1x1: bool) -> None:
    """Refuse an unknown block kind, or ``stride_on_1x1`` for basic units, in one line."""
    if block not in BLOCKS:
        raise ValueError(f"unknown block {block!r}; accepted: {', '.join(BLOCKS)}")
    if stride_on_1x1 and block != "bottleneck":
        raise ValueError("stride_on_1x1 applies to bottleneck units only (preact_resnet50 and up, 164, 1001)")


class PreActNet(ClassifierNet):
    """What the two forms share: the final BN-ReLU (the appendix's "extra activation" after the last unit), the global
    average pool and the classifier, and the authors' initialisation."""

    classifier_path = "fc"
    min_input_size = 1  # every conv and the max pool is padded; a stride-2 1x1 projection rounds up as they do
    norms = ResNet.norms

    def build_stages(
        self,
        block: str,
        channels: int,
        widths: tuple[int, ...],
        strides: tuple[int, ...],
        depths: tuple[int, ...],
        stride_on_1x1: bool,
        drop_path: float,
    ) -> None:
        """After the stem of ``channels`` outputs: stage i of ``depths[i]`` ``block`` units of bottleneck width
        ``widths[i]`` (the first with ``strides[i]``), the head, stochastic depth and the initialisation."""
        for i, (width, stride, depth) in enumerate(zip(widths, strides, depths, strict=True)):
            out_channels = width * EXPANSION[block]
            stage = make_preact_stage(
                block, channels, out_channels, depth, stride, self.activation, self.norm, stride_on_1x1
            )
            self.add_module(f"layer{i + 1}", stage)
            channels = out_channels
        self.build_head(channels)
        add_stochastic_depth(self, drop_path)  # Huang et al. 2016: block l of L dropped with l / L * drop_path
        self.init_weights(self.init, self.init_std)

    def build_head(self, channels: int) -> None:
        """BN-ReLU on the last unit's sum, global average pool, fc to the classes."""
        self.bn = make_norm(self.norm, channels)
        self.act = make_activation(self.activation, channels, inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, self.num_classes)

    def _init_paper(self) -> None:
        init_resnet(self)
        nn.init.zeros_(self.fc.bias)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(features), 1))


class PreActResNet(PreActNet):
    """The ImageNet pre-activation ResNet (Section 5): Table 1's stages of ``block`` units, ``layers[i]`` a stage."""

    native_input_size = (3, 224, 224)

    def __init__(
        self,
        block: str,
        layers: tuple[int, int, int, int],
        *,
        stride_on_1x1: bool = False,
        drop_path: float = 0.0,
        norm: str = "batch",
        **kwargs: Any,
    ) -> None:
        super().__init__(norm=norm, **kwargs)
        check_block(block, stride_on_1x1)
        self.block = block
        # Table 1, conv1: 7x7, 64, stride 2 -> 112x112; 3x3 max pool, stride 2 -> 56x56. No BN-ReLU here: the first
        # unit's shared one is "the first activation right after conv1 and before splitting into two paths"
        self.conv1 = nn.Conv2d(self.in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        # Table 1, conv2_x to conv5_x: 56x56, 28x28, 14x14, 7x7
        self.build_stages(block, 64, (64, 128, 256, 512), (1, 2, 2, 2), layers, stride_on_1x1, drop_path)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 to layer4 and the final BN-ReLU: the 7x7 map of 512 (basic) or 2048 (bottleneck) channels for a
        224x224 image."""
        x = self.maxpool(self.conv1(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.act(self.bn(x))


def units_per_stage(block: str, depth: int) -> int:
    """n of depth = 9n + 2 (bottleneck units) or 6n + 2 (basic units); another depth is refused in one line."""
    convs = 3 * (3 if block == "bottleneck" else 2)  # convs of the three stages' units, per n
    if not isinstance(depth, int) or depth < convs + 2 or (depth - 2) % convs:
        examples = "11, 20, 29, ..., 164, ..., 1001" if block == "bottleneck" else "8, 14, 20, ..., 110"
        raise ValueError(f"depth of {block} units must be {convs}n + 2 with n >= 1 ({examples}), got {depth!r}")
    return (depth - 2) // convs


class CifarPreActResNet(PreActNet):
    """The CIFAR pre-activation ResNet of Section 4: conv1, three stages of n units (depth 9n + 2 for bottleneck
    units, 6n + 2 for basic ones) of bottleneck widths 16, 32, 64, the final BN-ReLU."""

    native_input_size = (3, 32, 32)

    def __init__(
        self,
        block: str,
        depth: int,
        *,
        stride_on_1x1: bool = False,
        drop_path: float = 0.0,
        num_classes: int = 10,
        norm: str = "batch",
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, norm=norm, **kwargs)
        check_block(block, stride_on_1x1)
        num_blocks = units_per_stage(block, depth)
        self.block, self.depth = block, depth
        # conv1: 3x3, 16 at 32x32 (its BN-ReLU is the first unit's shared one)
        self.conv1 = nn.Conv2d(self.in_channels, 16, kernel_size=3, padding=1, bias=False)
        # three stages at 32x32, 16x16, 8x8: units of outputs 64, 128, 256 (bottleneck) or 16, 32, 64 (basic)
        self.build_stages(block, 16, (16, 32, 64), (1, 2, 2), (num_blocks,) * 3, stride_on_1x1, drop_path)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 to layer3 and the final BN-ReLU: the 8x8 map of 256 (bottleneck) or 64 (basic) channels for a 32x32
        image."""
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.act(self.bn(x))


# CIFAR networks, Section 4 (Tables 3 and 4)


@register_model
def preact_resnet164(**kwargs: Any) -> CifarPreActResNet:
    """Pre-activation ResNet-164 for CIFAR (Table 3): bottleneck units, n = 18; 1,703,258 parameters for 10 classes
    (the paper: 1.7M)."""
    return CifarPreActResNet("bottleneck", 164, **kwargs)


@register_model
def preact_resnet1001(**kwargs: Any) -> CifarPreActResNet:
    """Pre-activation ResNet-1001 for CIFAR (Table 4): bottleneck units, n = 111; 10,327,706 parameters for 10
    classes (the paper: 10.2M, which is the count without the batch norms: 10,178,490)."""
    return CifarPreActResNet("bottleneck", 1001, **kwargs)


@register_model(exclude=("stride_on_1x1",))
def preact_resnet110(**kwargs: Any) -> CifarPreActResNet:
    """Pre-activation ResNet-110 for CIFAR (Table 3): basic units, n = 18; 1,730,522 parameters for 10 classes (the
    paper: 1.7M)."""
    return CifarPreActResNet("basic", 110, **kwargs)


# ImageNet networks, Section 5 (Table 5): He et al. 2016a's Table 1 with pre-activation units


@register_model(exclude=("stride_on_1x1",))
def preact_resnet18(**kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-18: basic units (2, 2, 2, 2); 11,687,720 parameters for 1000 classes (timm's
    resnetv2_18)."""
    return PreActResNet("basic", (2, 2, 2, 2), **kwargs)


@register_model(exclude=("stride_on_1x1",))
def preact_resnet34(**kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-34: basic units (3, 4, 6, 3); 21,795,880 parameters for 1000 classes (timm's
    resnetv2_34)."""
    return PreActResNet("basic", (3, 4, 6, 3), **kwargs)


@register_model
def preact_resnet50(**kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-50: bottleneck units (3, 4, 6, 3); 25,549,352 parameters for 1000 classes (timm's
    resnetv2_50)."""
    return PreActResNet("bottleneck", (3, 4, 6, 3), **kwargs)


@register_model
def preact_resnet101(**kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-101: bottleneck units (3, 4, 23, 3); 44,541,480 parameters for 1000 classes (timm's
    resnetv2_101)."""
    return PreActResNet("bottleneck", (3, 4, 23, 3), **kwargs)


@register_model
def preact_resnet152(**kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-152 (Table 5): bottleneck units (3, 8, 36, 3); 60,185,128 parameters for 1000 classes
    (timm's resnetv2_152)."""
    return PreActResNet("bottleneck", (3, 8, 36, 3), **kwargs)


@register_model
def preact_resnet200(**kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-200 (Table 5): bottleneck units (3, 24, 36, 3); 64,666,152 parameters for 1000 classes."""
    return PreActResNet("bottleneck", (3, 24, 36, 3), **kwargs)
