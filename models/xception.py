"""Xception: a linear stack of depthwise separable convolutions with residual connections.

F. Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017 (arXiv:1610.02357).

Figure 5 (299x299x3 input; "SepConv" is a depthwise separable convolution, a 3x3 depthwise convolution followed by
a 1x1 pointwise one with nothing between them, Section 3; every convolution and separable convolution is followed
by batch normalization, "not included in the diagram"; output sizes as the paper's implementation gives them, its
first two convolutions unpadded, the rest padded):

    flow     layer                                                       output         parameters (1000 classes)
    entry    conv1   3x3, 32, stride 2, BN, ReLU                         149x149x32        864 + 64
             conv2   3x3, 64, BN, ReLU                                   147x147x64     18,432 + 128
             block1  [SepConv 128, BN, ReLU, SepConv 128, BN], max pool  74x74x128      35,264
                     3x3 stride 2; shortcut 1x1 conv 128, stride 2, BN
             block2  [ReLU, SepConv 256, BN] x 2, max pool; shortcut      37x37x256     136,064
             block3  [ReLU, SepConv 728, BN] x 2, max pool; shortcut      19x19x728     915,944
    middle   block1-block8  [ReLU, SepConv 728, BN] x 3; identity         19x19x728     8 x 1,613,976
             shortcut, "repeated 8 times"
    exit     block   ReLU, SepConv 728, BN, ReLU, SepConv 1024, BN,       10x10x1024    2,039,584
                     max pool; shortcut 1x1 conv 1024, stride 2, BN
             conv3   SepConv 1536, BN, ReLU                               10x10x1536    1,582,080 + 3,072
             conv4   SepConv 2048, BN, ReLU                               10x10x2048    3,159,552 + 4,096
             global average pooling                                       2048
    head     dropout 0.5 (Section 4.3), logistic regression (fc)          1000          2,049,000

A SepConv from c to c' channels has 9c + cc' weights (no bias: a batch norm follows), a batch norm 2 per channel.
Total: 22,855,952 parameters, Table 3's figure. "The Xception architecture has 36 convolutional layers ... structured
into 14 modules, all of which have linear residual connections around them, except for the first and last modules"
(Section 3): conv1 and conv2, 12 blocks of 2 or 3 separable convolutions (32 in all), and the separable conv3 and
conv4. Fig. 5's "optional fully-connected layer(s)" were tried on JFT only (Table 2); the ImageNet network has none.

The max pools of the blocks are 3x3 with stride 2 and padding 1, as in timm's ``legacy_xception``, whose state dicts
load into this network (``Xception.convert_timm_state_dict``) and give the same outputs. Global average pooling
lets the network take any image of at least 7x7 pixels (conv1 and conv2 are unpadded: 7 -> 3 -> 1).

``activation`` replaces every ReLU (``act1``, ``act2``, ... in a block; ``act1``/``act2`` after conv1/conv2 and
``act3``/``act4`` after conv3/conv4), ``norm`` every batch norm, the shortcuts' included: ``batch`` (the paper's),
``group`` or ``layer``; ``none`` is refused, as for ResNet (bias-free convolutions in a residual stack).
``dropout`` (0.5, Section 4.3: "a dropout layer of rate 0.5 before the logistic regression layer") acts in
training mode only.

Initialisation (``init="paper"``): the paper names none; its implementation, Keras' ``Xception`` by the same author
(with the paper's ImageNet weights), keeps Keras' defaults: Glorot uniform for every convolution (depthwise ones
included) and the classifier, zero biases, batch norms as the identity: ``init="xavier_uniform"`` here.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from models._activations import make_activation
from models._base import ClassifierNet, check_rate
from models._init import init_weights
from models._norms import make_norm
from models._registry import register_model
from models.resnet import ResNet

# Figure 5's blocks: (input channels, the separable convolutions' output channels, stride of the max pool); the entry
# flow's first block starts without a ReLU (conv2's activation precedes it)
ENTRY_FLOW = ((64, (128, 128), 2), (128, (256, 256), 2), (256, (728, 728), 2))
MIDDLE_FLOW = ((728, (728, 728, 728), 1),) * 8
EXIT_FLOW = (728, (728, 1024), 2)
EXIT_WIDTHS = (1536, 2048)  # conv3, conv4


class SeparableConv2d(nn.Module):
    """A depthwise separable convolution (Section 3): a 3x3 convolution of each channel on its own (``depthwise``),
    then a 1x1 convolution across channels (``pointwise``), with no nonlinearity or bias between or after them."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionBlock(nn.Module):
    """A module of Figure 5: ``branch`` ([ReLU, SepConv, BN] per width, then a 3x3 max pool of ``stride`` when it is
    2) plus ``shortcut``, a 1x1 convolution of that stride and a BN where the shape changes, else the identity."""

    def __init__(
        self,
        in_channels: int,
        widths: tuple[int, ...],
        stride: int,
        activation: str,
        norm: str,
        start_with_activation: bool = True,
    ) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        for i, width in enumerate(widths, start=1):
            if i > 1 or start_with_activation:
                # the first activation reads the block's input, which the shortcut needs intact: not in place
                layers[f"act{i}"] = make_activation(activation, channels, inplace=i > 1)
            layers[f"sep{i}"] = SeparableConv2d(channels, width)
            layers[f"bn{i}"] = make_norm(norm, width)
            channels = width
        if stride != 1:
            layers["pool"] = nn.MaxPool2d(3, stride, padding=1)
        self.branch = nn.Sequential(layers)
        projects = in_channels != channels or stride != 1
        self.shortcut = (
            nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), norm=make_norm(norm, channels)
                )
            )
            if projects
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(x) + (x if self.shortcut is None else self.shortcut(x))


class Xception(ClassifierNet):
    """Xception of Figure 5: the entry flow, the middle flow of 8 blocks, the exit flow, global average pooling,
    dropout and the logistic regression layer."""

    classifier_path = "fc"
    native_input_size = (3, 299, 299)
    min_input_size = 7  # the unpadded conv1 (stride 2) and conv2: 7 -> 3 -> 1; the padded pools keep 1 at 1
    norms = ResNet.norms

    def __init__(self, *, dropout: float = 0.5, norm: str = "batch", **kwargs: Any) -> None:
        super().__init__(norm=norm, **kwargs)
        check_rate("dropout", dropout)
        self.dropout = dropout
        activation = self.activation
        entry: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=nn.Conv2d(self.in_channels, 32, 3, stride=2, bias=False),
            bn1=make_norm(norm, 32),
            act1=make_activation(activation, 32, inplace=True),
            conv2=nn.Conv2d(32, 64, 3, bias=False),
            bn2=make_norm(norm, 64),
            act2=make_activation(activation, 64, inplace=True),
        )
        for i, (channels, widths, stride) in enumerate(ENTRY_FLOW, start=1):
            entry[f"block{i}"] = XceptionBlock(channels, widths, stride, activation, norm, start_with_activation=i > 1)
        self.entry_flow = nn.Sequential(entry)
        self.middle_flow = nn.Sequential(
            OrderedDict(
                (f"block{i}", XceptionBlock(channels, widths, stride, activation, norm))
                for i, (channels, widths, stride) in enumerate(MIDDLE_FLOW, start=1)
            )
        )
        channels, widths, stride = EXIT_FLOW
        exit_flow: OrderedDict[str, nn.Module] = OrderedDict(
            block=XceptionBlock(channels, widths, stride, activation, norm)
        )
        channels = widths[-1]
        for i, width in enumerate(EXIT_WIDTHS, start=3):
            exit_flow[f"conv{i}"] = SeparableConv2d(channels, width)
            exit_flow[f"bn{i}"] = make_norm(norm, width)
            exit_flow[f"act{i}"] = make_activation(activation, width, inplace=True)
            channels = width
        self.exit_flow = nn.Sequential(exit_flow)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)  # Section 4.3: before the logistic regression layer
        self.fc = nn.Linear(channels, self.num_classes)
        self.init_weights(self.init, self.init_std)

    def _init_paper(self) -> None:
        init_weights(self, "xavier_uniform")  # Keras' defaults, those of the paper's implementation

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The three flows: a 10x10 map of 2048 channels for a 299x299 image."""
        return self.exit_flow(self.middle_flow(self.entry_flow(x)))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.flatten(self.avgpool(features), 1)))

    @staticmethod
    def convert_timm_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A state dict of timm's ``legacy_xception`` in our names. timm numbers its 12 blocks in one sequence and
        keeps each block's layers in a list ``rep`` of [ReLU, SepConv, BN] triples (block1's without its first
        ReLU); its separable convolutions call the depthwise layer ``conv1``, its shortcut ``skip`` and ``skipbn``.
        Keys of another form are left as they are, for the loader to report."""
        return {_timm_key(key): value for key, value in state_dict.items()}


# timm's top-level layers of the entry and exit flows -> ours
_TIMM_LAYERS = {
    **{f"{layer}{i}": f"entry_flow.{layer}{i}" for layer in ("conv", "bn") for i in (1, 2)},
    **{f"{layer}{i}": f"exit_flow.{layer}{i}" for layer in ("conv", "bn") for i in (3, 4)},
}
_TIMM_BLOCK = re.compile(r"block(\d+)\.(?:rep\.(\d+)|(skip|skipbn))\.(.+)")


def _timm_block(number: int) -> str:
    """Our path of timm's ``block<number>``: 1-3 the entry flow's, 4-11 the middle flow's, 12 the exit flow's."""
    if number <= len(ENTRY_FLOW):
        return f"entry_flow.block{number}"
    if number <= len(ENTRY_FLOW) + len(MIDDLE_FLOW):
        return f"middle_flow.block{number - len(ENTRY_FLOW)}"
    return "exit_flow.block"


def _timm_key(key: str) -> str:
    """One key of timm's ``legacy_xception`` in our names (see ``Xception.convert_timm_state_dict``)."""
    top, _, rest = key.partition(".")
    if top in _TIMM_LAYERS:
        return f"{_TIMM_LAYERS[top]}.{rest.replace('conv1.', 'depthwise.')}"
    match = _TIMM_BLOCK.fullmatch(key)
    if match is None:
        return key
    number, position, skip, rest = match.groups()
    block = _timm_block(int(number))
    if skip is not None:
        return f"{block}.shortcut.{'conv' if skip == 'skip' else 'norm'}.{rest}"
    offset = int(position) + (number == "1")  # block1's list lacks the leading ReLU
    index, kind = divmod(offset, 3)  # [ReLU, SepConv, BN] at 0, 1, 2 of each triple
    layer = {1: f"sep{index + 1}", 2: f"bn{index + 1}"}.get(kind)
    if layer is None:
        return key
    return f"{block}.branch.{layer}.{rest.replace('conv1.', 'depthwise.')}"


@register_model
def xception(**kwargs: Any) -> Xception:
    """Xception of Figure 5 for 299x299 images: 22,855,952 parameters for 1000 classes (Table 3)."""
    return Xception(**kwargs)
