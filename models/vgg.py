"""VGG.

K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015. Table 1 gives the configurations built here, A (vgg11), B (vgg13), D (vgg16) and E (vgg19);
the number of convs in each stage is listed for A|B|D|E:

    input 3x224x224
    stage 1  conv3-64   x 1|2|2|2   maxpool 2x2  -> 64x112x112
    stage 2  conv3-128  x 1|2|2|2   maxpool 2x2  -> 128x56x56
    stage 3  conv3-256  x 2|2|3|4   maxpool 2x2  -> 256x28x28
    stage 4  conv3-512  x 2|2|3|4   maxpool 2x2  -> 512x14x14
    stage 5  conv3-512  x 2|2|3|4   maxpool 2x2  -> 512x7x7
    FC-4096, FC-4096, FC-1000, with dropout 0.5 after the first two (Section 3.1)

Every conv is 3x3 with stride 1 and padding 1 and is followed by a ReLU (Section 2.1), so only the pools shrink the
maps; the five of them make 32x32 the smallest input. Configuration D has 138,357,544 parameters and E 143,667,240
(Table 2 rounds them to 138 and 144 million). The ``_bn`` variants put a batch norm between each conv and its ReLU,
as torchvision does (batch norm postdates the paper); ``norm`` chooses that layer for any configuration: ``none``
(the default of vgg11-19), ``batch`` (of the ``_bn`` variants), ``group`` or ``layer`` (``models._norms``), named
``bn1``, ``bn2``, ... whichever it is. ``activation`` replaces the ReLUs and ``dropconnect`` makes FC6 and FC7 drop
weights. As in torchvision, an adaptive average pool to 7x7 comes before the classifier: at 224x224 it is the
identity, and at other sizes it lets the fully-connected layers keep their shapes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from models._activations import make_activation
from models._base import ClassifierNet, check_rate, rename_layers
from models._dropconnect import DropConnectLinear
from models._norms import make_norm
from models._registry import register_model

# Table 1: the widths of the 3x3 convs of each of the five stages; every stage ends in a 2x2 max-pool.
CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "A": ((64,), (128,), (256, 256), (512, 512), (512, 512)),  # 11 weight layers
    "B": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),  # 13 weight layers
    "D": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),  # 16 weight layers
    "E": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),  # 19 weight layers
}

# Section 3.1 samples the weights "from a normal distribution with the zero mean and 10^-2 variance". We take 10^-2
# as the standard deviation, AlexNet's value and torchvision's for VGG's linear layers: a literal variance of 10^-2
# (std 0.1) makes configuration A's logits millions of times larger than its input.
PAPER_INIT_STD = 0.01


def _make_stage(in_channels: int, widths: tuple[int, ...], activation: str, norm: str) -> nn.Sequential:
    """A stack of 3x3 convs (each with its activation, and a normalisation if asked) ending in a 2x2 max-pool."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for index, width in enumerate(widths, start=1):
        layers[f"conv{index}"] = nn.Conv2d(in_channels, width, kernel_size=3, padding=1)  # Section 2.1: stride 1, pad 1
        if norm != "none":
            layers[f"bn{index}"] = make_norm(norm, width)
        layers[f"act{index}"] = make_activation(activation, width, inplace=True)
        in_channels = width
    layers["pool"] = nn.MaxPool2d(kernel_size=2, stride=2)  # Section 2.1: 2x2 window, stride 2
    return nn.Sequential(layers)


class VGG(ClassifierNet):
    """A VGG network of Table 1, configuration ``config`` (A, B, D or E), with a normalisation or none."""

    classifier_path = "classifier.fc8"
    native_input_size = (3, 224, 224)
    min_input_size = 32  # five 2x2 pools: 32 -> 1x1 at the end, 31 -> 0x0
    norms = ("none", "batch", "group", "layer")  # after every conv, before its activation

    def __init__(self, config: str, *, dropout: float = 0.5, dropconnect: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if config not in CONFIGS:
            raise ValueError(f"unknown VGG configuration {config!r}; accepted: {', '.join(CONFIGS)}")
        check_rate("dropout", dropout)
        self.config = config
        in_channels, activation = self.in_channels, self.activation

        stages: OrderedDict[str, nn.Module] = OrderedDict()
        for index, widths in enumerate(CONFIGS[config], start=1):
            stages[f"stage{index}"] = _make_stage(in_channels, widths, activation, self.norm)
            in_channels = widths[-1]
        self.features = nn.Sequential(stages)  # 512 maps of 7x7 at 224x224
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))  # torchvision's; the identity at 224x224
        self.classifier = nn.Sequential(
            OrderedDict(
                fc6=DropConnectLinear(512 * 7 * 7, 4096, dropconnect),  # Table 1: FC-4096
                act6=make_activation(activation, 4096, inplace=True),
                drop6=nn.Dropout(dropout),  # Section 3.1: dropout 0.5 on the first two FC layers
                fc7=DropConnectLinear(4096, 4096, dropconnect),  # FC-4096
                act7=make_activation(activation, 4096, inplace=True),
                drop7=nn.Dropout(dropout),
                fc8=nn.Linear(4096, self.num_classes),  # FC-1000, the class scores
            )
        )
        self.init_weights(self.init, self.init_std)

    def _init_paper(self) -> None:
        # Section 3.1: configuration A starts from normal weights of standard deviation 0.01 and zero biases;
        # the deeper B, D and E started from A's trained layers, which are not at hand, and the paper adds that
        # "it is possible to initialise the weights without pre-training by using the random initialisation
        # procedure of Glorot & Bengio (2010)": B, D and E use that (xavier_uniform), as at N(0, 0.01) their
        # logits shrink to ~1e-9 of the input and nothing trains.
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                if self.config == "A":
                    nn.init.normal_(module.weight, mean=0.0, std=PAPER_INIT_STD)
                else:
                    nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):  # not in the paper: the usual scale one, shift zero
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The five conv stages: 512 maps of (H/32)x(W/32)."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Pool to 7x7, flatten, and the three fully-connected layers."""
        return self.classifier(torch.flatten(self.avgpool(features), 1))

    def torchvision_layer_names(self) -> dict[str, str]:
        """Our name of each torchvision layer that holds weights, keyed by torchvision's name.

        torchvision's ``features`` is one flat Sequential: per conv a Conv2d, a BatchNorm2d (``_bn`` only; here
        any norm but none) and a ReLU, and per stage a MaxPool2d; its ``classifier`` is Linear, ReLU, Dropout
        (twice), Linear.
        """
        names = {"classifier.0": "classifier.fc6", "classifier.3": "classifier.fc7", "classifier.6": "classifier.fc8"}
        position = 0  # index in torchvision's features
        for stage, widths in enumerate(CONFIGS[self.config], start=1):
            for conv in range(1, len(widths) + 1):
                names[f"features.{position}"] = f"features.stage{stage}.conv{conv}"
                position += 1
                if self.norm != "none":
                    names[f"features.{position}"] = f"features.stage{stage}.bn{conv}"
                    position += 1
                position += 1  # ReLU
            position += 1  # MaxPool2d
        return names

    def convert_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename torchvision's keys to ours, e.g. vgg11's ``features.3.weight`` to ``features.stage2.conv1.weight``."""
        return rename_layers(state_dict, self.torchvision_layer_names())


@register_model
def vgg11(**kwargs: Any) -> VGG:
    """Configuration A of Table 1 (132,863,336 parameters)."""
    return VGG("A", **kwargs)


@register_model
def vgg13(**kwargs: Any) -> VGG:
    """Configuration B of Table 1 (133,047,848 parameters)."""
    return VGG("B", **kwargs)


@register_model
def vgg16(**kwargs: Any) -> VGG:
    """Configuration D of Table 1 (138,357,544 parameters)."""
    return VGG("D", **kwargs)


@register_model
def vgg19(**kwargs: Any) -> VGG:
    """Configuration E of Table 1 (143,667,240 parameters)."""
    return VGG("E", **kwargs)


@register_model
def vgg11_bn(*, norm: str = "batch", **kwargs: Any) -> VGG:
    """Configuration A with batch norm after each conv (132,868,840 parameters)."""
    return VGG("A", norm=norm, **kwargs)


@register_model
def vgg13_bn(*, norm: str = "batch", **kwargs: Any) -> VGG:
    """Configuration B with batch norm after each conv (133,053,736 parameters)."""
    return VGG("B", norm=norm, **kwargs)


@register_model
def vgg16_bn(*, norm: str = "batch", **kwargs: Any) -> VGG:
    """Configuration D with batch norm after each conv (138,365,992 parameters)."""
    return VGG("D", norm=norm, **kwargs)


@register_model
def vgg19_bn(*, norm: str = "batch", **kwargs: Any) -> VGG:
    """Configuration E with batch norm after each conv (143,678,248 parameters)."""
    return VGG("E", norm=norm, **kwargs)
