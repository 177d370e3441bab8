"""DenseNet-BC.

G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger, "Densely Connected Convolutional Networks",
CVPR 2017. The ImageNet networks follow Table 1, the CIFAR network Section 3 ("Implementation Details").

Every layer of a dense block sees the concatenation of the block's input and of all earlier layers'
outputs (Eq. 2), and adds ``k`` (the growth rate) feature maps of its own. The layers are the paper's
bottleneck form (DenseNet-B): BN-ReLU-Conv(1x1, 4k)-BN-ReLU-Conv(3x3, k). Between blocks a transition
(BN-ReLU-Conv(1x1)-AvgPool(2x2)) halves the feature maps (compression theta = 0.5, DenseNet-C). After the
last block come BN-ReLU, global average pooling and a linear classifier. Table 1, for 224x224 input:

    layers          Table 1                                   output   DenseNet-121 / -169 / -201
    Convolution     7x7 conv of 2k channels, stride 2         112x112
    Pooling         3x3 max pool, stride 2                     56x56
    Dense Block 1   bottleneck layers                          56x56   6 / 6 / 6
    Transition 1    1x1 conv, 2x2 average pool, stride 2       28x28
    Dense Block 2                                              28x28   12 / 12 / 12
    Transition 2                                               14x14
    Dense Block 3                                              14x14   24 / 32 / 48
    Transition 3                                                7x7
    Dense Block 4                                               7x7    16 / 32 / 32
    Classification  7x7 global average pool, 1000-way fully-connected

with k = 32. DenseNet-161 is not in the paper's tables: it is the k = 48 ImageNet model released with
the authors' code (github.com/liuzhuang13/DenseNet) and in torchvision, with blocks of 6, 12, 36 and 24
layers and 96 initial channels. Table 1's DenseNet-264 is not built here. The four have 7,978,856 /
14,149,480 / 20,013,928 / 28,681,000 parameters for 1000 classes. The CIFAR form (Section 3,
"Implementation Details") starts with a single 3x3 convolution of 2k channels at full resolution and
has three blocks of (L - 4) / 6 layers at 32x32, 16x16 and 8x8; for L = 100, k = 12 it has 769,162
parameters for 10 classes (Table 2 rounds to 0.8M).

The layer names are torchvision's (``features.denseblock1.denselayer1.norm1``), so its weights load as they are; the
activations, which hold no weights in torchvision's model, are ``act1``, ``act2``, ... here. ``activation`` replaces
the ReLUs (``models._activations``) and ``norm`` the batch norms: ``batch`` (the paper's), ``group`` or ``layer``
(``models._norms``). ``none`` is refused: the convolutions have no bias, and the pre-activation layers
(BN-ReLU-Conv) put the normalisation first. Dropout (``drop_rate``, 0 by default as on ImageNet; the paper used 0.2
on CIFAR without data augmentation) follows each convolution but the first, as in Section 4.2; torchvision drops
only the 3x3 convolution's output, which changes nothing at inference. The weights start as in the paper's code and
torchvision: He normal for the convolutions, BN scale 1 and shift 0, and zero classifier bias.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models._activations import make_activation
from models._base import ClassifierNet, check_rate
from models._norms import make_norm
from models._registry import register_model

BN_SIZE = 4  # Section 3, DenseNet-B: "let each 1x1 convolution produce 4k feature-maps"
COMPRESSION = 0.5  # Section 3, DenseNet-C: a transition keeps floor(theta * m) of its m maps, theta = 0.5


class DenseLayer(nn.Sequential):
    """One bottleneck layer H_l of a dense block: BN-ReLU-Conv(1x1)-BN-ReLU-Conv(3x3) (Section 3, DenseNet-B)."""

    def __init__(
        self, in_channels: int, growth_rate: int, bn_size: int, drop_rate: float, activation: str, norm: str
    ) -> None:
        super().__init__(
            OrderedDict(
                norm1=make_norm(norm, in_channels),
                act1=make_activation(activation, in_channels, inplace=True),
                # "let each 1x1 convolution produce 4k feature-maps"
                conv1=nn.Conv2d(in_channels, bn_size * growth_rate, kernel_size=1, bias=False),
                drop1=nn.Dropout(drop_rate),
                norm2=make_norm(norm, bn_size * growth_rate),
                act2=make_activation(activation, bn_size * growth_rate, inplace=True),
                # k new feature maps; zero padding keeps the size, so they can be concatenated
                conv2=nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False),
                drop2=nn.Dropout(drop_rate),
            )
        )


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers, each fed the concatenation of all the maps before it (Eq. 2)."""

    def __init__(
        self,
        num_layers: int,
        in_channels: int,
        growth_rate: int,
        bn_size: int,
        drop_rate: float,
        activation: str,
        norm: str,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, drop_rate, activation, norm)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.values():
            x = torch.cat([x, layer(x)], dim=1)  # x_l = [x_0, x_1, ..., x_{l-1}] grows by k channels
        return x


class Transition(nn.Sequential):
    """BN-ReLU-Conv(1x1)-AvgPool(2x2) between two dense blocks: halves the size, compresses the channels."""

    def __init__(self, in_channels: int, out_channels: int, drop_rate: float, activation: str, norm: str) -> None:
        super().__init__(
            OrderedDict(
                norm=make_norm(norm, in_channels),
                act=make_activation(activation, in_channels, inplace=True),
                conv=nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
                drop=nn.Dropout(drop_rate),
                pool=nn.AvgPool2d(kernel_size=2, stride=2),
            )
        )


class DenseNet(ClassifierNet):
    """DenseNet-BC for 224x224 ImageNet images (Table 1).

    ``block_config`` holds the number of layers of each dense block and ``num_init_features`` is the width
    of the first convolution.
    """

    classifier_path = "classifier"
    native_input_size = (3, 224, 224)
    min_input_size = 29  # 29 -> 15 (conv0) -> 8 (pool0) -> 4 -> 2 -> 1 (transitions)
    norms = ("batch", "group", "layer")

    def __init__(
        self,
        growth_rate: int,
        block_config: tuple[int, ...],
        num_init_features: int,
        *,
        drop_rate: float = 0.0,
        norm: str = "batch",
        **kwargs: Any,
    ) -> None:
        super().__init__(norm=norm, **kwargs)
        check_rate("drop_rate", drop_rate)
        activation = self.activation
        self.features = self._stem(self.in_channels, num_init_features, activation, norm)
        channels = num_init_features
        for i, num_layers in enumerate(block_config, start=1):
            block = DenseBlock(num_layers, channels, growth_rate, BN_SIZE, drop_rate, activation, norm)
            self.features.add_module(f"denseblock{i}", block)
            channels += num_layers * growth_rate
            if i < len(block_config):
                out_channels = int(COMPRESSION * channels)  # floor(theta * m) output maps (Section 3)
                transition = Transition(channels, out_channels, drop_rate, activation, norm)
                self.features.add_module(f"transition{i}", transition)
                channels = out_channels
        # BN-ReLU after the last block, named as torchvision does: norm5 after 4 blocks (norm4 in the CIFAR form)
        self.features.add_module(f"norm{len(block_config) + 1}", make_norm(norm, channels))
        self.features.add_module(f"act{len(block_config) + 1}", make_activation(activation, channels, inplace=True))
        self.classifier = nn.Linear(channels, self.num_classes)
        self.init_weights(self.init, self.init_std)

    @staticmethod
    def _stem(in_channels: int, num_init_features: int, activation: str, norm: str) -> nn.Sequential:
        return nn.Sequential(
            OrderedDict(
                # Table 1 "Convolution": 7x7 conv, stride 2 (with the BN-ReLU of the paper's code)
                conv0=nn.Conv2d(in_channels, num_init_features, kernel_size=7, stride=2, padding=3, bias=False),
                norm0=make_norm(norm, num_init_features),
                act0=make_activation(activation, num_init_features, inplace=True),
                # Table 1 "Pooling": 3x3 max pool, stride 2
                pool0=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        )

    def _init_paper(self) -> None:
        # the paper's code (fb.resnet.torch) and torchvision: He et al. 2015 normal for the convolutions
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The stem, the dense blocks and transitions, and the final BN-ReLU."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        # Table 1 "Classification Layer": global average pool, then the fully-connected layer
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(features, 1), 1))


class DenseNetCifar(DenseNet):
    """DenseNet-BC for 32x32 CIFAR images (Section 3): a 3x3 stem and three blocks at 32, 16 and 8 pixels."""

    native_input_size = (3, 32, 32)
    min_input_size = 4  # two transitions: 4 -> 2 -> 1

    @staticmethod
    def _stem(in_channels: int, num_init_features: int, activation: str, norm: str) -> nn.Sequential:
        # "a convolution with 16 (or twice the growth rate for DenseNet-BC) output channels";
        # the first dense layer's BN-ReLU follows directly
        conv0 = nn.Conv2d(in_channels, num_init_features, kernel_size=3, padding=1, bias=False)
        return nn.Sequential(OrderedDict(conv0=conv0))


@register_model
def densenet121(**kwargs: Any) -> DenseNet:
    """DenseNet-121 (Table 1, k = 32): 7,978,856 parameters for 1000 classes."""
    return DenseNet(32, (6, 12, 24, 16), 64, **kwargs)


@register_model
def densenet161(**kwargs: Any) -> DenseNet:
    """DenseNet-161 (the authors' k = 48 release, 96 initial channels): 28,681,000 parameters for 1000 classes."""
    return DenseNet(48, (6, 12, 36, 24), 96, **kwargs)


@register_model
def densenet169(**kwargs: Any) -> DenseNet:
    """DenseNet-169 (Table 1, k = 32): 14,149,480 parameters for 1000 classes."""
    return DenseNet(32, (6, 12, 32, 32), 64, **kwargs)


@register_model
def densenet201(**kwargs: Any) -> DenseNet:
    """DenseNet-201 (Table 1, k = 32): 20,013,928 parameters for 1000 classes."""
    return DenseNet(32, (6, 12, 48, 32), 64, **kwargs)


@register_model
def densenet_bc_100(*, num_classes: int = 10, **kwargs: Any) -> DenseNetCifar:
    """DenseNet-BC with L = 100, k = 12 for CIFAR (Table 2): 769,162 parameters for 10 classes."""
    # L = 100 counts 3 x 16 x 2 convolutions in the blocks, the first conv, 2 transitions and the classifier
    return DenseNetCifar(12, (16, 16, 16), 24, num_classes=num_classes, **kwargs)
