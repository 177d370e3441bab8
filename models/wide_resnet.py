"""Wide ResNet: WRN-d-k, the pre-activation residual network of CIFAR made k times wider and shallower.

S. Zagoruyko, N. Komodakis, "Wide Residual Networks", BMVC 2016 (arXiv:1605.07146).

Table 1 (3x32x32 input; N blocks a group, depth d = 6N + 4, widen factor k; B(3,3) is the basic block of two 3x3
convolutions, Section 2):

    group    output size   block type
    conv1      32x32       [3x3, 16]
    conv2      32x32       [3x3, 16k;  3x3, 16k] x N
    conv3      16x16       [3x3, 32k;  3x3, 32k] x N
    conv4       8x8        [3x3, 64k;  3x3, 64k] x N
    avg-pool    1x1        [8x8]

followed by the fully-connected classifier. The depth counts conv1, the 2 convolutions of each of the 3N blocks
and the 3 projections: 6N + 1 + 3 = 6N + 4 (WRN-28-10: N = 4, k = 10; WRN-16-8: N = 2, k = 8; WRN-40-4: N = 6,
k = 4). The paper's parameter counts (Tables 4 and 5): WRN-28-10 36.5M, WRN-16-8 11.0M, WRN-40-4 8.9M.

A block is the pre-activation basic block of He et al. 2016 ("Identity Mappings in Deep Residual Networks"; Fig. 1(a)
and (d) here): BN-ReLU-conv3x3, BN-ReLU-[dropout]-conv3x3, the shortcut added after the second convolution with no
activation after the sum. conv3 and conv4 downsample by a stride of 2 in their first block's first convolution.
Where the width or the stride changes (the first block of every group; conv2's too, 16 -> 16k) the shortcut is a
1x1 projection convolution, taken, as in the authors' code, from the block's pre-activated input (its first
BN-ReLU then serves both paths); elsewhere it is the identity. A BN-ReLU follows the last group, before the global
average pool and the fully-connected layer. Convolutions have no bias (each feeds a batch norm or a sum).

Dropout (Section 2.4, Table 6: 0.3 on CIFAR): "between convolutions ... and after ReLU", so it drops the
activations that the second convolution of each block reads; ``dropout=0`` (the default, the paper's results
without it) keeps the layers and drops nothing. Dropout acts in training mode only. ``drop_path`` is stochastic
depth (Huang et al. 2016, as in ``models.resnet``): block l of the 3N drops its residual branch with probability
l / 3N * ``drop_path`` in training, for the whole mini-batch.

``activation`` replaces every ReLU (``act1``, ``act2`` in a block, ``act`` after the last group), ``norm`` every
batch norm: ``batch`` (the paper's), ``group`` or ``layer``; ``none`` is refused, as for ResNet (bias-free
convolutions in a residual stack need a normalisation or an initialisation made for its absence).

Initialisation (``init="paper"``): the authors' code initialises the convolutions as He et al. 2015 (normal with
variance 2/fan_out), batch norms to the identity and the classifier's bias to zero, as ``models.resnet`` does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models._activations import make_activation
from models._base import ClassifierNet, check_rate
from models._norms import make_norm
from models._registry import register_model
from models._stochastic_depth import ResidualBlock, add_stochastic_depth
from models.resnet import ResNet, init_resnet


def widths(widen_factor: int) -> tuple[int, int, int]:
    """Table 1: the output channels of conv2, conv3 and conv4, 16k, 32k and 64k."""
    return 16 * widen_factor, 32 * widen_factor, 64 * widen_factor


def blocks_per_group(depth: int) -> int:
    """N of d = 6N + 4; a depth of another form is refused in one line."""
    if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"depth must be 6N + 4 with N >= 1 (10, 16, 22, 28, 34, 40, ...), got {depth!r}")
    return (depth - 4) // 6


class WideBasicBlock(ResidualBlock):
    """B(3,3) with pre-activation: conv2(drop(act2(bn2(conv1(act1(bn1(x))))))) + shortcut."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, dropout: float, activation: str, norm: str
    ) -> None:
        super().__init__()
        self.bn1 = make_norm(norm, in_channels)
        self.act1 = make_activation(activation, in_channels, inplace=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = make_norm(norm, out_channels)
        self.act2 = make_activation(activation, out_channels, inplace=True)
        self.drop = nn.Dropout(dropout)  # Section 2.4: between the convolutions, after the ReLU
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        # the 1x1 projection where the shape changes; None is the identity
        projects = in_channels != out_channels or stride != 1
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False) if projects else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.act1(self.bn1(x))
        out = self.drop_residual(self.conv2(self.drop(self.act2(self.bn2(self.conv1(activated))))))
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(ClassifierNet):
    """WRN-``depth``-``widen_factor`` of Table 1 for 32x32 images: conv1, three groups of (depth - 4) / 6 blocks."""

    classifier_path = "fc"
    native_input_size = (3, 32, 32)
    norms = ResNet.norms
    min_input_size = 1  # padded 3x3 convs; a stride-2 1x1 projection rounds up as the stride-2 3x3 conv does

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        *,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        num_classes: int = 10,
        norm: str = "batch",
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, norm=norm, **kwargs)
        num_blocks = blocks_per_group(depth)
        if not isinstance(widen_factor, int) or widen_factor < 1:
            raise ValueError(f"widen_factor must be a positive integer, got {widen_factor!r}")
        check_rate("dropout", dropout)
        self.depth, self.widen_factor, self.dropout = depth, widen_factor, dropout
        activation = self.activation
        # Table 1, conv1: 3x3, 16 at 32x32
        self.conv1 = nn.Conv2d(self.in_channels, 16, kernel_size=3, padding=1, bias=False)
        # Table 1, conv2 to conv4: N blocks of 16k, 32k, 64k channels at 32x32, 16x16, 8x8
        channels = 16
        for i, (width, stride) in enumerate(zip(widths(widen_factor), (1, 2, 2), strict=True), start=1):
            blocks = [
                WideBasicBlock(channels if j == 0 else width, width, stride if j == 0 else 1, dropout, activation, norm)
                for j in range(num_blocks)
            ]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            channels = width
        # the last block's output is not activated (pre-activation): BN-ReLU before the pool
        self.bn = make_norm(norm, channels)
        self.act = make_activation(activation, channels, inplace=True)
        # Table 1, avg-pool, then the fully-connected classifier
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, self.num_classes)
        add_stochastic_depth(self, drop_path)  # Huang et al. 2016: block l of L dropped with l / L * drop_path
        self.init_weights(self.init, self.init_std)

    def _init_paper(self) -> None:
        init_resnet(self)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 to conv4 and the final BN-ReLU: the 8x8 map of 64k channels for a 32x32 image."""
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.act(self.bn(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(features), 1))


# Table 1 with the depths and widths of the paper's CIFAR results (Tables 4 to 6)


@register_model
def wrn_28_10(**kwargs: Any) -> WideResNet:
    """WRN-28-10 for CIFAR: N = 4, k = 10; 36,479,194 parameters for 10 classes (the paper: 36.5M)."""
    return WideResNet(28, 10, **kwargs)


@register_model
def wrn_16_8(**kwargs: Any) -> WideResNet:
    """WRN-16-8 for CIFAR: N = 2, k = 8; 10,961,370 parameters for 10 classes (the paper: 11.0M)."""
    return WideResNet(16, 8, **kwargs)


@register_model
def wrn_40_4(**kwargs: Any) -> WideResNet:
    """WRN-40-4 for CIFAR: N = 6, k = 4; 8,949,210 parameters for 10 classes (the paper: 8.9M)."""
    return WideResNet(40, 4, **kwargs)
