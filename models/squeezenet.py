"""SqueezeNet.

F. N. Iandola, S. Han, M. W. Moskewicz, K. Ashraf, W. J. Dally, K. Keutzer, "SqueezeNet: AlexNet-level
accuracy with 50x fewer parameters and <0.5MB model size", arXiv:1602.07360, 2016. ``squeezenet1_0``
follows Table 1 and Figure 2 (left); ``squeezenet1_1`` is the SqueezeNet v1.1 of the authors' repository
(github.com/forresti/SqueezeNet), which reaches the same accuracy with 2.4x less computation.

A Fire module (Section 3.2) squeezes its input with s1x1 1x1 convolutions and expands it again with
e1x1 1x1 and e3x3 3x3 convolutions, whose outputs are concatenated; every convolution is followed by a
ReLU. Table 1, with the output sizes of the 227x227 crops of the authors' Caffe model (the table lists
the input as 224x224; at 224x224 conv1 gives 109x109 and maxpool1 54x54, and from maxpool4 on the
sizes agree):

    layer      filters           s1x1  e1x1  e3x3   output
    conv1      96 7x7/2                             111x111x96
    maxpool1   3x3/2                                 55x55x96
    fire2                          16    64    64    55x55x128
    fire3                          16    64    64    55x55x128
    fire4                          32   128   128    55x55x256
    maxpool4   3x3/2                                 27x27x256
    fire5                          32   128   128    27x27x256
    fire6                          48   192   192    27x27x384
    fire7                          48   192   192    27x27x384
    fire8                          64   256   256    27x27x512
    maxpool8   3x3/2                                 13x13x512
    fire9                          64   256   256    13x13x512
    conv10     1000 1x1 (after 50% dropout)          13x13x1000
    avgpool10  13x13 (global)                         1x1x1000

v1.1 has a 3x3/2 conv1 of 64 channels and the same Fire modules, pooled earlier: maxpool1 after conv1,
maxpool3 after fire3, maxpool5 after fire5 (224x224 input: 111, 55, 27, 13 pixels). That is 1,248,424
parameters (v1.1: 1,235,496) for 1000 classes. There is no fully-connected layer (Section 3.3): conv10
maps to the classes and global average pooling gives the scores. The pools round up (Caffe's rule), as
torchvision's ``ceil_mode=True`` does.

``bypass="simple"`` adds the identity shortcuts of Section 6 (Figure 2, middle) around fire3, fire5,
fire7 and fire9, the Fire modules whose input and output channel counts agree; in v1.1 these are the
same four modules (128, 256, 384 and 512 channels), so the option means the same there. The weights
start as torchvision's: He uniform for the convolutions, N(0, 0.01) for conv10, zero biases. Layers are
named after Table 1; ``convert_torchvision_state_dict`` maps torchvision's ``nn.Sequential`` indices to
these names.

``activation`` replaces every ReLU, the one on conv10's class maps included (``models._activations``); ``norm="batch"``
puts batch norm after every convolution but conv10, before its activation (the paper has none: ``norm="none"``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from models._activations import make_activation
from models._base import ClassifierNet, check_rate, rename_layers
from models._norms import make_norm
from models._registry import register_model

BYPASSES = ("none", "simple")


class Fire(nn.Module):
    """Fire module (Section 3.2, Figure 1): squeeze 1x1, then concatenated expand 1x1 and expand 3x3."""

    def __init__(
        self,
        in_channels: int,
        squeeze: int,
        expand1x1: int,
        expand3x3: int,
        bypass: bool = False,
        activation: str = "relu",
        norm: str = "none",
    ) -> None:
        super().__init__()
        self.bypass = bypass  # only where in_channels == expand1x1 + expand3x3
        self.squeeze = nn.Conv2d(in_channels, squeeze, kernel_size=1)  # s1x1 < e1x1 + e3x3 (Strategy 2)
        self.squeeze_bn = make_norm(norm, squeeze)
        self.squeeze_activation = make_activation(activation, squeeze, inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_bn = make_norm(norm, expand1x1)
        self.expand1x1_activation = make_activation(activation, expand1x1, inplace=True)
        # 1-pixel zero padding so the 1x1 and 3x3 outputs have the same size (Section 3.3)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_bn = make_norm(norm, expand3x3)
        self.expand3x3_activation = make_activation(activation, expand3x3, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = self.squeeze_activation(self.squeeze_bn(self.squeeze(x)))
        out = torch.cat(
            [
                self.expand1x1_activation(self.expand1x1_bn(self.expand1x1(squeezed))),
                self.expand3x3_activation(self.expand3x3_bn(self.expand3x3(squeezed))),
            ],
            dim=1,
        )
        return out + x if self.bypass else out  # Section 6: the bypass adds the module's input


# Table 1, fire2 to fire9: the widths s1x1, e1x1 and e3x3 of each Fire module (v1.1 has the same modules)
FIRES = (
    (16, 64, 64),  # fire2
    (16, 64, 64),  # fire3
    (32, 128, 128),  # fire4
    (32, 128, 128),  # fire5
    (48, 192, 192),  # fire6
    (48, 192, 192),  # fire7
    (64, 256, 256),  # fire8
    (64, 256, 256),  # fire9
)
BYPASSED = (3, 5, 7, 9)  # Section 6: the Fire modules whose input and output channel counts agree


class SqueezeNet(ClassifierNet):
    """SqueezeNet body shared by both versions: conv1 (``conv1``: filters, kernel size; stride 2), maxpool1, the Fire
    modules of ``FIRES`` with a 3x3/2 max pool after those numbered in ``pools_after``, then the conv10 classifier."""

    classifier_path = "classifier.conv10"
    native_input_size = (3, 224, 224)
    norms = ("none", "batch")
    conv1: tuple[int, int]
    pools_after: tuple[int, ...]

    def __init__(self, *, dropout: float = 0.5, bypass: str = "none", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if bypass not in BYPASSES:
            raise ValueError(f"unknown bypass {bypass!r}; accepted: {', '.join(BYPASSES)}")
        check_rate("dropout", dropout)
        self.features = self._features(bypass == "simple", self.activation, self.norm)
        # Section 3.3: dropout 50% after fire9, conv10 to the classes, then global average pooling (no FC)
        self.classifier = nn.Sequential(
            OrderedDict(
                dropout=nn.Dropout(dropout),
                conv10=nn.Conv2d(512, self.num_classes, kernel_size=1),
                act10=make_activation(self.activation, self.num_classes, inplace=True),
                avgpool10=nn.AdaptiveAvgPool2d(1),
            )
        )
        self.init_weights(self.init, self.init_std)

    def _features(self, bypass: bool, activation: str, norm: str) -> nn.Sequential:
        channels, kernel_size = self.conv1
        layers = OrderedDict(
            conv1=nn.Conv2d(self.in_channels, channels, kernel_size=kernel_size, stride=2),
            bn1=make_norm(norm, channels),
            act1=make_activation(activation, channels, inplace=True),
            maxpool1=nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        )
        for index, (squeeze, expand1x1, expand3x3) in enumerate(FIRES, start=2):
            with_bypass = bypass and index in BYPASSED
            layers[f"fire{index}"] = Fire(channels, squeeze, expand1x1, expand3x3, with_bypass, activation, norm)
            channels = expand1x1 + expand3x3
            if index in self.pools_after:
                layers[f"maxpool{index}"] = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        return nn.Sequential(layers)

    def _init_paper(self) -> None:
        # torchvision's initialisation of the authors' model: conv10 N(0, 0.01), the others He uniform
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                if module is self.classifier.conv10:
                    nn.init.normal_(module.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def convert_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename torchvision's keys (``features.3.squeeze.weight``) to ours (``features.fire2.squeeze.weight``).

        torchvision's ``features`` is one Sequential of ours but bn1: Conv2d, ReLU, MaxPool2d, then the same Fire
        modules and max pools; its ``classifier`` is Dropout, Conv2d, ReLU, AdaptiveAvgPool2d."""
        layers = [name for name, _ in self.features.named_children() if name != "bn1"]
        names = {f"features.{index}": f"features.{name}" for index, name in enumerate(layers)}
        return rename_layers(state_dict, names | {"classifier.1": "classifier.conv10"})

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 to fire9: the 512 maps that conv10 classifies."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(features), 1)


class SqueezeNet1_0(SqueezeNet):
    """SqueezeNet v1.0: Table 1, conv1 96 7x7/2, max pools after conv1, fire4 and fire8."""

    min_input_size = 21  # 21 -> 8 (conv1) -> 4 (maxpool1) -> 2 (maxpool4) -> 1 (maxpool8)
    conv1 = (96, 7)
    pools_after = (4, 8)


class SqueezeNet1_1(SqueezeNet):
    """SqueezeNet v1.1 (the authors' repository): a 3x3 conv1 of 64 channels, and the pools moved earlier."""

    min_input_size = 17  # 17 -> 8 (conv1) -> 4 (maxpool1) -> 2 (maxpool3) -> 1 (maxpool5)
    conv1 = (64, 3)
    pools_after = (3, 5)


@register_model
def squeezenet1_0(**kwargs: Any) -> SqueezeNet1_0:
    """SqueezeNet v1.0 (Table 1): 1,248,424 parameters for 1000 classes."""
    return SqueezeNet1_0(**kwargs)


@register_model
def squeezenet1_1(**kwargs: Any) -> SqueezeNet1_1:
    """SqueezeNet v1.1 (the authors' repository): 1,235,496 parameters for 1000 classes."""
    return SqueezeNet1_1(**kwargs)
