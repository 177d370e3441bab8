"""ResNeXt for CIFAR: ResNeXt-29, residual blocks that aggregate C transformations by a grouped convolution.

S. Xie, R. Girshick, P. Dollar, Z. Tu, K. He, "Aggregated Residual Transformations for Deep Neural Networks",
CVPR 2017. The CIFAR networks of Section 5.3 and Table 7.

A block computes y = x + sum_{i=1..C} T_i(x) (Eq. 3): C paths ("cardinality") of the same topology, each a 1x1
conv down to d channels (the "bottleneck width"), a 3x3 conv of d to d channels and a 1x1 conv up to the block's
output width, their outputs summed. Figure 3 draws three equivalent forms; this file builds form (c), the one the
paper trains: a 1x1 conv to C*d channels, one 3x3 conv of C*d channels in C groups of d (each group is one path's
3x3 conv), a 1x1 conv to the output width (which sums the C paths' last layers). Table 1's template "C x d" names a
network by its first stage's paths; the widths double with each downsampling (Sec. 3.1, rule (ii), after VGG/ResNet).

The CIFAR network (Sec. 5.3): a 3x3 conv of 64 filters, 3 stages of 3 residual blocks each with output widths of
256, 512 and 1024, average pooling and a fully-connected classifier, 29 layers deep; 3x32x32 input:

    stage    output   layers
    conv1    32x32    3x3, 64
    stage1   32x32    [1x1, C*d;   3x3, C*d,   C groups; 1x1, 256]  x 3
    stage2   16x16    [1x1, 2C*d;  3x3, 2C*d,  C groups; 1x1, 512]  x 3
    stage3    8x8     [1x1, 4C*d;  3x3, 4C*d,  C groups; 1x1, 1024] x 3
    fc        1x1     global average pool, 10-d fc

Table 7: ResNeXt-29, 8x64d has 34.4M parameters and 3.65% CIFAR-10 error (17.77% on CIFAR-100); 16x64d has 68.1M
and 3.58% (17.31%). Here ``resnext29_8x64d`` has 34,426,698 parameters and ``resnext29_16x64d`` 68,155,210 for 10
classes; without batch norm's scales and shifts (57,472 and 100,480 of them) 34,369,226 and 68,054,730, which the
paper's 34.4M and 68.1M both round. ``ResNeXtCifar(depth, cardinality, bottleneck_width)`` builds any of Figure 7's
ResNeXt-29s (other cardinalities and widths); the depth is 9n + 2 for n blocks a stage.

Each conv is followed by batch norm, and a ReLU follows each batch norm but the block's last, whose ReLU comes after
the addition of the shortcut (Sec. 4, as ResNet). As on ImageNet (Sec. 5.1), stages 2 and 3 downsample by a stride
of 2 in the 3x3 conv of their first block, and the shortcuts are identities but where the dimensions increase (the
first block of each stage), where they are projections, 1x1 conv + batch norm (ResNet's type B). The convolutions
have no bias.

``activation`` replaces every ReLU (``models._activations``), ``norm`` every batch norm, the projections' included:
``batch`` (the paper's), ``group`` or ``layer``; ``none`` is refused, as for ResNet. Initialisation (``init="paper"``):
ResNet's (He et al. 2015, normal with variance 2/fan_out for the convs; batch norm scale one, shift zero; the fc
layer keeps PyTorch's default). ``drop_path`` is stochastic depth (Huang et al. 2016, as in ``models.resnet``):
block l of the 3n drops its residual branch with probability l / 3n * ``drop_path`` in training, for the whole
mini-batch.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from models._activations import make_activation
from models._base import ClassifierNet
from models._norms import make_norm
from models._registry import register_model
from models._stochastic_depth import add_stochastic_depth
from models.resnet import Bottleneck, ResNet, init_resnet, make_stage

STAGE_WIDTHS = (256, 512, 1024)  # Sec. 5.3: the output widths of the three stages
STEM_WIDTH = 64  # Sec. 5.3: the first layer, a 3x3 conv of 64 filters (Table 1's conv1 width)


class ResNeXtCifar(ClassifierNet):
    """ResNeXt-``depth`` for CIFAR (Sec. 5.3): ``cardinality`` paths of ``bottleneck_width`` channels in stage 1,
    twice as wide in stage 2 and four times in stage 3, (``depth`` - 2) / 9 blocks a stage."""

    classifier_path = "fc"
    native_input_size = (3, 32, 32)
    min_input_size = 1  # every conv is padded and the strided 1x1 projections round up as the 3x3 convs do
    norms = ResNet.norms

    def __init__(
        self,
        depth: int,
        cardinality: int,
        bottleneck_width: int,
        num_classes: int = 10,
        *,
        drop_path: float = 0.0,
        norm: str = "batch",
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, norm=norm, **kwargs)
        if depth < 11 or (depth - 2) % 9:
            raise ValueError(f"depth must be 9n + 2 (3 stages of n blocks of 3 layers, conv1 and fc), got {depth}")
        for name, value in (("cardinality", cardinality), ("bottleneck_width", bottleneck_width)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.cardinality = cardinality
        self.bottleneck_width = bottleneck_width
        num_blocks = (depth - 2) // 9
        activation = self.activation
        # Sec. 5.3: a 3x3 conv layer of 64 filters at 32x32
        self.stem = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(self.in_channels, STEM_WIDTH, kernel_size=3, padding=1, bias=False),
                bn1=make_norm(norm, STEM_WIDTH),
                act1=make_activation(activation, STEM_WIDTH, inplace=True),
            )
        )
        # Sec. 5.3: three stages of blocks at 32x32, 16x16 and 8x8; the paths' width doubles with each (Sec. 3.1).
        # A block is ResNet's bottleneck with its 3x3 conv in C groups (Figure 3(c)): of out / 4 "planes", it is
        # planes * width_per_group / 64 * C = C * d * 2^stage wide for width_per_group = d in every stage.
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels = STEM_WIDTH
        for index, out_channels in enumerate(STAGE_WIDTHS):
            stages[f"stage{index + 1}"] = make_stage(
                Bottleneck, in_channels, out_channels // Bottleneck.expansion, num_blocks, 1 if index == 0 else 2,
                "B", norm, activation=activation, groups=cardinality, width_per_group=bottleneck_width,
            )  # fmt: skip
            in_channels = out_channels
        self.stages = nn.Sequential(stages)
        # Sec. 5.3: global average pooling and a fully-connected classifier
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(STAGE_WIDTHS[-1], self.num_classes)
        add_stochastic_depth(self, drop_path)  # Huang et al. 2016: block l of L dropped with l / L * drop_path
        self.init_weights(self.init, self.init_std)

    def _init_paper(self) -> None:
        init_resnet(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The stem and the three stages: the 8x8 map of 1024 channels for a 32x32 image."""
        return self.stages(self.stem(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(features))


# Table 7: ResNeXt-29 with C paths of d channels in stage 1 ("C x d")


@register_model
def resnext29_8x64d(**kwargs: Any) -> ResNeXtCifar:
    """ResNeXt-29, 8x64d for CIFAR (Table 7: 34.4M): 34,426,698 parameters for 10 classes."""
    return ResNeXtCifar(29, 8, 64, **kwargs)


@register_model
def resnext29_16x64d(**kwargs: Any) -> ResNeXtCifar:
    """ResNeXt-29, 16x64d for CIFAR (Table 7: 68.1M): 68,155,210 parameters for 10 classes."""
    return ResNeXtCifar(29, 16, 64, **kwargs)
