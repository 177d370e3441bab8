"""ResNet: deep residual networks, in the ImageNet form (resnet18 to resnet152) and the CIFAR-10 form (resnet20 to 110).

K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.

ImageNet networks, Table 1 (3x224x224 input; output size of each stage on the left; [..] x n is a block repeated n
times, a basic block of two 3x3 convs for resnet18/34, a 1x1-3x3-1x1 bottleneck with 4x expansion for resnet50+):

    conv1    112x112   7x7, 64, stride 2
    maxpool   56x56    3x3 max pool, stride 2
    layer1    56x56    [3x3, 64;  3x3, 64]  x n1    or   [1x1, 64;  3x3, 64;  1x1, 256]  x n1
    layer2    28x28    [3x3, 128; 3x3, 128] x n2    or   [1x1, 128; 3x3, 128; 1x1, 512]  x n2
    layer3    14x14    [3x3, 256; 3x3, 256] x n3    or   [1x1, 256; 3x3, 256; 1x1, 1024] x n3
    layer4     7x7     [3x3, 512; 3x3, 512] x n4    or   [1x1, 512; 3x3, 512; 1x1, 2048] x n4
    fc         1x1     global average pool, 1000-d fc

(n1, n2, n3, n4) = (2, 2, 2, 2) for resnet18, (3, 4, 6, 3) for resnet34 and resnet50, (3, 4, 23, 3) for resnet101
and (3, 8, 36, 3) for resnet152. Layers 2 to 4 downsample by a stride of 2 in their first block. Batch norm follows
every conv, before the ReLU (Sec. 3.4); the shortcut joins before the block's last ReLU (Fig. 2 and 5). Where the
shape changes the shortcut is a projection, option B of Sec. 3.3 (1x1 conv + BN). A bottleneck strides its 3x3 conv,
as torchvision does ("ResNet v1.5"); ``stride_on_1x1=True`` strides the first 1x1 conv instead, as the paper's
released models did. Layer names follow torchvision's, so its state dicts load as they are.

Aggregated and wide bottlenecks, the same network with a wider or grouped 3x3 conv in every bottleneck: the 3x3 conv
of a block of ``planes`` (64, 128, 256, 512 in layer1 to layer4) is ``planes * width_per_group / 64 * groups`` wide
and split into ``groups`` groups; the 1x1 convs around it reduce to and expand from that width, and the block's
output stays ``4 * planes``.

S. Xie, R. Girshick, P. Dollar, Z. Tu, K. He, "Aggregated Residual Transformations for Deep Neural Networks",
CVPR 2017. Table 1 (ResNeXt-50 32x4d: cardinality C = 32 paths of width d = 4, as one grouped conv, Fig. 3c):

    conv1    112x112   7x7, 64, stride 2
    maxpool   56x56    3x3 max pool, stride 2
    layer1    56x56    [1x1, 128;  3x3, 128,  C=32; 1x1, 256]  x 3
    layer2    28x28    [1x1, 256;  3x3, 256,  C=32; 1x1, 512]  x 4
    layer3    14x14    [1x1, 512;  3x3, 512,  C=32; 1x1, 1024] x 6
    layer4     7x7     [1x1, 1024; 3x3, 1024, C=32; 1x1, 2048] x 3
    fc         1x1     global average pool, 1000-d fc          25.0 x 10^6 parameters, 4.2 x 10^9 FLOPs

that is ``groups=32, width_per_group=4``: 64 * 4 / 64 * 32 = 128 in layer1. ResNeXt-101 has ResNet-101's depths
(3, 4, 23, 3); "32x8d" is C = 32, d = 8 (twice Table 1's widths) and "64x4d" C = 64, d = 4 (Table 4's 2x-complexity
model). Downsampling is the stride of the 3x3 conv of each stage's first block (Sec. 5.1), as here by default.

S. Zagoruyko, N. Komodakis, "Wide Residual Networks", BMVC 2016, Section 4 (ImageNet): WRN-50-2-bottleneck is
ResNet-50 with the inner 1x1-3x3 width of every bottleneck doubled and the outer width kept (the last block
2048-1024-2048 instead of 2048-512-2048), 68.9M parameters; ``groups=1, width_per_group=128``. ``wide_resnet101_2``
is the same widening of ResNet-101, as torchvision has it.

CIFAR-10 networks, Section 4.2 (3x32x32 input; 6n+2 layers with n = 3, 5, 7, 9, 18 for resnet20 to resnet110):

    conv1     32x32    3x3, 16
    layer1    32x32    [3x3, 16; 3x3, 16] x n
    layer2    16x16    [3x3, 32; 3x3, 32] x n
    layer3     8x8     [3x3, 64; 3x3, 64] x n
    fc         1x1     global average pool, 10-d fc

with option A shortcuts (``shortcut="A"``): identity everywhere, and where the shape changes the input is subsampled
with a stride of 2 and zero channels are appended for the extra width, so the shortcuts have no parameters.
``shortcut="B"`` uses projections there instead.

``activation`` replaces every ReLU (``models._activations``; one module per place, named ``act1``, ``act2``, ...) and
``norm`` every batch norm, the projections' included: ``batch`` (the paper's), ``group`` or ``layer``
(``models._norms``; the layers keep the names ``bn1``, ``bn2``, ...). ``none`` is refused: the convolutions have no
bias, and without normalisation a He-initialised residual stack grows its activations block after block, which
takes an initialisation made for it (Fixup, Zhang et al. 2019) to train.

Initialisation (``init="paper"``): convs as in He et al. 2015 (Sec. 3.4: normal with variance 2/fan_out), batch-norm
scales one and shifts zero; the fc layer keeps PyTorch's default, as in torchvision. ``zero_init_residual`` starts
the last batch norm of each residual branch at zero, so that each block begins as the identity (torchvision's option).

Stochastic depth (Huang et al. 2016, ``models._stochastic_depth``): ``drop_path`` (p_L of the paper is 1 -
``drop_path``) drops, in training, the residual branch of block l of the network's L blocks (all stages counted,
54 for ResNet-110) with probability l / L * ``drop_path`` (Eq. 4), for the whole mini-batch; the paper's CIFAR runs
use 0.5. At evaluation, and with the default 0, every block is the plain residual sum.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from models._activations import make_activation
from models._base import ClassifierNet
from models._init import DEFAULT_STD
from models._norms import make_norm
from models._registry import register_model
from models._stochastic_depth import ResidualBlock, add_stochastic_depth

SHORTCUTS = ("A", "B")


class ZeroPadShortcut(nn.Module):
    """Option A (Sec. 3.3): the identity subsampled by ``stride``, zero channels appended up to ``out_channels``."""

    def __init__(self, out_channels: int, stride: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - x.shape[1]))  # pad (W, H, C): zeros after the channels


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int, norm: str) -> nn.Module | None:
    """The shortcut of a block: ``None`` (identity) where the shape is kept, else option A or B of Sec. 3.3."""
    if in_channels == out_channels and stride == 1:
        return None
    if kind == "A":
        return ZeroPadShortcut(out_channels, stride)
    # Option B: a projection, 1x1 conv + BN (torchvision's "downsample.0" and "downsample.1")
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False), make_norm(norm, out_channels)
    )


class BasicBlock(ResidualBlock):
    """Two 3x3 convs with a shortcut around them (Fig. 5 left): relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        activation: str = "relu",
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = make_norm(norm, channels)
        self.act1 = make_activation(activation, channels, inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = make_norm(norm, channels)
        self.act2 = make_activation(activation, channels, inplace=True)
        self.downsample = downsample  # the shortcut where the shape changes; None is the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.drop_residual(self.bn2(self.conv2(out)))
        return self.act2(out + shortcut)  # Eq. 1: y = F(x) + x, then the ReLU


class Bottleneck(ResidualBlock):
    """1x1 (reduce), 3x3, 1x1 (expand to 4 x ``width``) with a shortcut around them (Fig. 5 right). The inner width
    is ``width * width_per_group / 64 * groups`` and the 3x3 conv has ``groups`` groups (Xie et al., Fig. 3c):
    ``width`` itself for ResNet's default ``groups=1, width_per_group=64``."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        activation: str = "relu",
        norm: str = "batch",
        stride_on_1x1: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        stride_1x1, stride_3x3 = (stride, 1) if stride_on_1x1 else (1, stride)
        inner = width * width_per_group // 64 * groups  # Xie et al. Table 1: 64 * 4 / 64 * 32 = 128 for 32x4d
        self.conv1 = nn.Conv2d(in_channels, inner, kernel_size=1, stride=stride_1x1, bias=False)
        self.bn1 = make_norm(norm, inner)
        self.act1 = make_activation(activation, inner, inplace=True)
        self.conv2 = nn.Conv2d(
            inner, inner, kernel_size=3, stride=stride_3x3, padding=1, groups=groups, bias=False
        )  # C paths of width d as one grouped conv (Fig. 3c)
        self.bn2 = make_norm(norm, inner)
        self.act2 = make_activation(activation, inner, inplace=True)
        self.conv3 = nn.Conv2d(inner, width * self.expansion, kernel_size=1, bias=False)
        self.bn3 = make_norm(norm, width * self.expansion)
        self.act3 = make_activation(activation, width * self.expansion, inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.drop_residual(self.bn3(self.conv3(out)))
        return self.act3(out + shortcut)


def make_stage(
    block: type[BasicBlock | Bottleneck],
    in_channels: int,
    width: int,
    num_blocks: int,
    stride: int,
    shortcut: str,
    norm: str,
    **block_options: str | bool | int,
) -> nn.Sequential:
    """``num_blocks`` blocks of ``width``; the first one takes the stride and the change of width."""
    out_channels = width * block.expansion
    downsample = make_shortcut(shortcut, in_channels, out_channels, stride, norm)
    blocks = [block(in_channels, width, stride, downsample, norm=norm, **block_options)]
    blocks += [block(out_channels, width, norm=norm, **block_options) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


def init_resnet(model: nn.Module) -> None:
    """Sec. 3.4: convs initialised as in He et al. 2015 (fan_out), batch norm to the identity, as torchvision."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def zero_init_last_bn(model: nn.Module) -> None:
    """Start the last batch norm of every residual branch at zero, so each block begins as the identity."""
    for module in model.modules():
        if isinstance(module, BasicBlock):
            nn.init.zeros_(module.bn2.weight)
        elif isinstance(module, Bottleneck):
            nn.init.zeros_(module.bn3.weight)


class ResNet(ClassifierNet):
    """The ImageNet ResNet of Table 1: ``block`` repeated ``layers[i]`` times in each of the four stages; with
    bottlenecks, ``groups`` and ``width_per_group`` make it a ResNeXt (Xie et al. Table 1) or a wide ResNet."""

    classifier_path = "fc"
    native_input_size = (3, 224, 224)
    min_input_size = 1  # every conv and the max pool is padded, so even a 1x1 image stays 1x1 down to the pool
    norms = ("batch", "group", "layer")

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        zero_init_residual: bool = False,
        stride_on_1x1: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        drop_path: float = 0.0,
        norm: str = "batch",
        **kwargs: Any,
    ) -> None:
        super().__init__(norm=norm, **kwargs)
        if stride_on_1x1 and block is not Bottleneck:
            raise ValueError("stride_on_1x1 applies to bottleneck blocks only (resnet50, resnet101, resnet152)")
        for name, value in (("groups", groups), ("width_per_group", width_per_group)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if (groups, width_per_group) != (1, 64) and block is not Bottleneck:
            raise ValueError("groups and width_per_group apply to bottleneck blocks only (resnet50 and up)")
        activation = self.activation
        options: dict[str, str | bool | int] = {"activation": activation}
        if block is Bottleneck:
            options.update(stride_on_1x1=stride_on_1x1, groups=groups, width_per_group=width_per_group)
        self.zero_init_residual = zero_init_residual
        # Table 1, conv1: 7x7, 64, stride 2 -> 112x112; then 3x3 max pool, stride 2 -> 56x56
        self.conv1 = nn.Conv2d(self.in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = make_norm(norm, 64)
        self.act1 = make_activation(activation, 64, inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        # Table 1, conv2_x to conv5_x: 56x56, 28x28, 14x14, 7x7 with projection shortcuts (option B)
        self.layer1 = make_stage(block, 64, 64, layers[0], 1, "B", norm, **options)
        self.layer2 = make_stage(block, 64 * block.expansion, 128, layers[1], 2, "B", norm, **options)
        self.layer3 = make_stage(block, 128 * block.expansion, 256, layers[2], 2, "B", norm, **options)
        self.layer4 = make_stage(block, 256 * block.expansion, 512, layers[3], 2, "B", norm, **options)
        # Table 1, last row: global average pool, fc
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, self.num_classes)
        add_stochastic_depth(self, drop_path)  # Huang et al. 2016: block l of L dropped with l / L * drop_path
        self.init_weights(self.init, self.init_std)

    def init_weights(self, scheme: str = "paper", std: float = DEFAULT_STD) -> None:
        super().init_weights(scheme, std)
        if self.zero_init_residual:
            zero_init_last_bn(self)

    def _init_paper(self) -> None:
        init_resnet(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 to layer4: the 7x7 map of 512 (basic) or 2048 (bottleneck) channels for a 224x224 image."""
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(features), 1))


class CifarResNet(ClassifierNet):
    """The CIFAR-10 ResNet of Sec. 4.2: a 3x3 conv, then three stages of ``num_blocks`` basic blocks."""

    classifier_path = "fc"
    native_input_size = (3, 32, 32)
    min_input_size = 1  # padded 3x3 convs and a stride-2 shortcut that rounds up, like the convs
    norms = ResNet.norms

    def __init__(
        self,
        num_blocks: int,
        num_classes: int = 10,
        *,
        shortcut: str = "A",
        drop_path: float = 0.0,
        norm: str = "batch",
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, norm=norm, **kwargs)
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {shortcut!r}; accepted: {', '.join(SHORTCUTS)}")
        activation = self.activation
        # Sec. 4.2: "The first layer is 3x3 convolutions", 16 filters at 32x32
        self.conv1 = nn.Conv2d(self.in_channels, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = make_norm(norm, 16)
        self.act1 = make_activation(activation, 16, inplace=True)
        # Sec. 4.2: 2n layers on each of the maps of 32x32, 16x16 and 8x8, with 16, 32 and 64 filters
        self.layer1 = make_stage(BasicBlock, 16, 16, num_blocks, 1, shortcut, norm, activation=activation)
        self.layer2 = make_stage(BasicBlock, 16, 32, num_blocks, 2, shortcut, norm, activation=activation)
        self.layer3 = make_stage(BasicBlock, 32, 64, num_blocks, 2, shortcut, norm, activation=activation)
        # Sec. 4.2: "global average pooling, a 10-way fully-connected layer"
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        add_stochastic_depth(self, drop_path)  # Huang et al. 2016: block l of L dropped with l / L * drop_path
        self.init_weights(self.init, self.init_std)

    def _init_paper(self) -> None:
        init_resnet(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 to layer3: the 8x8 map of 64 channels for a 32x32 image."""
        x = self.act1(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(features), 1))


# ImageNet networks, Table 1: the block and the number of blocks of each stage, (n1, n2, n3, n4). The widths of a
# ResNeXt or wide ResNet (groups, width_per_group) are fixed by each name, so no builder takes them.
FIXED_WIDTHS = ("groups", "width_per_group")


@register_model(exclude=("stride_on_1x1", *FIXED_WIDTHS))
def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18: basic blocks (2, 2, 2, 2); 11,689,512 parameters for 1000 classes."""
    return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)


@register_model(exclude=("stride_on_1x1", *FIXED_WIDTHS))
def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34: basic blocks (3, 4, 6, 3); 21,797,672 parameters for 1000 classes."""
    return ResNet(BasicBlock, (3, 4, 6, 3), **kwargs)


@register_model(exclude=FIXED_WIDTHS)
def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50: bottleneck blocks (3, 4, 6, 3); 25,557,032 parameters for 1000 classes."""
    return ResNet(Bottleneck, (3, 4, 6, 3), **kwargs)


@register_model(exclude=FIXED_WIDTHS)
def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101: bottleneck blocks (3, 4, 23, 3); 44,549,160 parameters for 1000 classes."""
    return ResNet(Bottleneck, (3, 4, 23, 3), **kwargs)


@register_model(exclude=FIXED_WIDTHS)
def resnet152(**kwargs: Any) -> ResNet:
    """ResNet-152: bottleneck blocks (3, 8, 36, 3); 60,192,808 parameters for 1000 classes."""
    return ResNet(Bottleneck, (3, 8, 36, 3), **kwargs)


# Xie et al. 2017 (Table 1: C paths of width d, "CxDd") and Zagoruyko & Komodakis 2016 (Sec. 4: the inner width
# doubled), on ResNet-50's and ResNet-101's depths


@register_model(exclude=FIXED_WIDTHS)
def resnext50_32x4d(**kwargs: Any) -> ResNet:
    """ResNeXt-50 (32x4d), Xie et al. Table 1: (3, 4, 6, 3), 32 groups of 4; 25,028,904 parameters for 1000 classes."""
    return ResNet(Bottleneck, (3, 4, 6, 3), groups=32, width_per_group=4, **kwargs)


@register_model(exclude=FIXED_WIDTHS)
def resnext101_32x8d(**kwargs: Any) -> ResNet:
    """ResNeXt-101 (32x8d): (3, 4, 23, 3), 32 groups of 8; 88,791,336 parameters for 1000 classes."""
    return ResNet(Bottleneck, (3, 4, 23, 3), groups=32, width_per_group=8, **kwargs)


@register_model(exclude=FIXED_WIDTHS)
def resnext101_64x4d(**kwargs: Any) -> ResNet:
    """ResNeXt-101 (64x4d), Xie et al. Table 4: (3, 4, 23, 3), 64 groups of 4; 83,455,272 parameters for 1000
    classes."""
    return ResNet(Bottleneck, (3, 4, 23, 3), groups=64, width_per_group=4, **kwargs)


@register_model(exclude=FIXED_WIDTHS)
def wide_resnet50_2(**kwargs: Any) -> ResNet:
    """Wide ResNet-50-2 (WRN-50-2-bottleneck, Zagoruyko & Komodakis Sec. 4): (3, 4, 6, 3), inner widths doubled;
    68,883,240 parameters for 1000 classes."""
    return ResNet(Bottleneck, (3, 4, 6, 3), width_per_group=128, **kwargs)


@register_model(exclude=FIXED_WIDTHS)
def wide_resnet101_2(**kwargs: Any) -> ResNet:
    """Wide ResNet-101-2: (3, 4, 23, 3), inner widths doubled; 126,886,696 parameters for 1000 classes."""
    return ResNet(Bottleneck, (3, 4, 23, 3), width_per_group=128, **kwargs)


# CIFAR-10 networks, Sec. 4.2: 6n+2 layers, n basic blocks a stage


@register_model
def resnet20(**kwargs: Any) -> CifarResNet:
    """ResNet-20 for CIFAR-10: n = 3; 269,722 parameters for 10 classes with option A shortcuts."""
    return CifarResNet(3, **kwargs)


@register_model
def resnet32(**kwargs: Any) -> CifarResNet:
    """ResNet-32 for CIFAR-10: n = 5; 464,154 parameters for 10 classes with option A shortcuts."""
    return CifarResNet(5, **kwargs)


@register_model
def resnet44(**kwargs: Any) -> CifarResNet:
    """ResNet-44 for CIFAR-10: n = 7; 658,586 parameters for 10 classes with option A shortcuts."""
    return CifarResNet(7, **kwargs)


@register_model
def resnet56(**kwargs: Any) -> CifarResNet:
    """ResNet-56 for CIFAR-10: n = 9; 853,018 parameters for 10 classes with option A shortcuts."""
    return CifarResNet(9, **kwargs)


@register_model
def resnet110(**kwargs: Any) -> CifarResNet:
    """ResNet-110 for CIFAR-10: n = 18; 1,727,962 parameters for 10 classes with option A shortcuts."""
    return CifarResNet(18, **kwargs)
