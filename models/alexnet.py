"""AlexNet.

A. Krizhevsky, I. Sutskever, G. E. Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks", NIPS 2012. ``alexnet`` follows Section 3 and Figure 2 as one ungrouped network (the paper
splits the kernels of each layer over two GPUs):

    input 3x227x227
    conv1  96@11x11 stride 4  -> 96x55x55,  ReLU, LRN, max-pool 3x3 stride 2 -> 96x27x27
    conv2  256@5x5 pad 2      -> 256x27x27, ReLU, LRN, max-pool 3x3 stride 2 -> 256x13x13
    conv3  384@3x3 pad 1      -> 384x13x13, ReLU
    conv4  384@3x3 pad 1      -> 384x13x13, ReLU
    conv5  256@3x3 pad 1      -> 256x13x13, ReLU, max-pool 3x3 stride 2 -> 256x6x6
    FC6 4096, FC7 4096 (each ReLU then dropout 0.5, Section 4.2), FC8 num_classes

The text says 224x224, but 11x11 windows at stride 4 give Figure 2's 55x55 maps only from 227 pixels
on, the size Caffe's reference model uses. Ungrouped, the network has 62,378,344 parameters; grouping
conv2, conv4 and conv5 in two, as the paper did, would leave the "60 million" of its abstract
(60,965,224). Local response normalisation (Section 3.3) follows the ReLUs of conv1 and conv2; ``norm`` chooses it
(``local_response``, the default), batch norm after every conv, before its activation (``batch``), or neither
(``none``). ``activation`` replaces the ReLUs (any of ``models._activations``) and ``dropconnect`` makes FC6 and FC7
drop weights (``models._dropconnect``). With no adaptive pool, FC6 takes exactly the 6x6 maps of pool5, which images
of 227 to 258 pixels give; other sizes raise a ValueError.

``alexnet_tv`` is torchvision's AlexNet, which its documentation attributes to A. Krizhevsky, "One weird
trick for parallelizing convolutional neural networks", arXiv:1404.5997, 2014: 64-192-384-256-256
kernels, conv1 padded by 2 for 224x224 inputs, no LRN (``norm="none"``; it takes the other two as well), an
adaptive average pool to 6x6 before the classifier, and dropout before FC6 and FC7 instead of after. It has
61,100,840 parameters and loads torchvision's weights.
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

# Section 3.3: b = a / (k + alpha * sum of a^2 over n adjacent maps)^beta, with k=2, n=5, alpha=1e-4, beta=0.75.
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0

# Section 5: weights "from a zero-mean Gaussian distribution with standard deviation 0.01".
PAPER_INIT_STD = 0.01

# torchvision's names of its layers with weights (its features and classifier are flat Sequentials) -> ours.
TORCHVISION_LAYER_NAMES = {
    "features.0": "features.conv1",
    "features.3": "features.conv2",
    "features.6": "features.conv3",
    "features.8": "features.conv4",
    "features.10": "features.conv5",
    "classifier.1": "classifier.fc6",
    "classifier.4": "classifier.fc7",
    "classifier.6": "classifier.fc8",
}


def local_response_norm() -> nn.LocalResponseNorm:
    """Section 3.3's response normalisation across maps (PyTorch divides alpha by n, so it is given n * alpha)."""
    return nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_SIZE * LRN_ALPHA, beta=LRN_BETA, k=LRN_K)


def fully_connected_head(
    in_features: int, num_classes: int, dropout: float, activation: str, dropconnect: float
) -> nn.Sequential:
    """FC6 and FC7, 4096 ReLUs each followed by dropout (Section 4.2), and FC8, the class scores."""
    return nn.Sequential(
        OrderedDict(
            fc6=DropConnectLinear(in_features, 4096, dropconnect),
            act6=make_activation(activation, 4096, inplace=True),
            drop6=nn.Dropout(dropout),
            fc7=DropConnectLinear(4096, 4096, dropconnect),
            act7=make_activation(activation, 4096, inplace=True),
            drop7=nn.Dropout(dropout),
            fc8=nn.Linear(4096, num_classes),
        )
    )


def init_normal(model: nn.Module, std: float) -> None:
    """Every conv and linear weight from N(0, ``std``^2), every bias zero."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            nn.init.zeros_(module.bias)


def add_conv(layers: OrderedDict[str, nn.Module], index: int, conv: nn.Conv2d, activation: str, norm: str) -> None:
    """Append ``conv{index}``, its batch norm where ``norm`` is batch (before the activation, as Ioffe & Szegedy 2015,
    Sec. 3.2), and its activation, ``act{index}``."""
    layers[f"conv{index}"] = conv
    if norm == "batch":
        layers[f"bn{index}"] = make_norm("batch", conv.out_channels)
    layers[f"act{index}"] = make_activation(activation, conv.out_channels, inplace=True)


def alexnet_features(
    in_channels: int, widths: tuple[int, int, int, int, int], conv1_padding: int, activation: str, norm: str
) -> nn.Sequential:
    """conv1 to pool5 of Figure 2 with ``widths`` kernels, each conv followed by ``activation`` (Section 3.5);
    ``norm`` is LRN after the activations of conv1 and conv2, batch norm before every activation, or none.

    Section 3.5: max-pools follow the two normalisations and conv5.
    """
    width1, width2, width3, width4, width5 = widths
    layers: OrderedDict[str, nn.Module] = OrderedDict()

    def conv(index: int, layer: nn.Conv2d) -> None:
        add_conv(layers, index, layer, activation, norm)
        if norm == "local_response" and index in (1, 2):
            layers[f"norm{index}"] = local_response_norm()

    conv(1, nn.Conv2d(in_channels, width1, kernel_size=11, stride=4, padding=conv1_padding))  # 55x55
    layers["pool1"] = nn.MaxPool2d(kernel_size=3, stride=2)  # Section 3.4: overlapping pooling, 27x27
    conv(2, nn.Conv2d(width1, width2, kernel_size=5, padding=2))  # 27x27
    layers["pool2"] = nn.MaxPool2d(kernel_size=3, stride=2)  # 13x13
    conv(3, nn.Conv2d(width2, width3, kernel_size=3, padding=1))  # 13x13
    conv(4, nn.Conv2d(width3, width4, kernel_size=3, padding=1))  # 13x13
    conv(5, nn.Conv2d(width4, width5, kernel_size=3, padding=1))  # 13x13
    layers["pool5"] = nn.MaxPool2d(kernel_size=3, stride=2)  # 6x6
    return nn.Sequential(layers)


class AlexNet(ClassifierNet):
    """AlexNet of Figure 2, ungrouped, for 227x227 images."""

    classifier_path = "classifier.fc8"
    native_input_size = (3, 227, 227)
    min_input_size = 227  # conv1 55 -> pool1 27 -> pool2 13 -> pool5 6x6; 226 gives 5x5 at pool5
    max_input_size = 258  # the last size whose pool5 maps are 6x6; 259 gives 7x7
    # local_response: Section 3.3's, after the activations of conv1 and conv2; batch: after every conv, before its
    # activation, as in torchvision's VGG with batch norm and Ioffe & Szegedy 2015, Sec. 3.2
    norms = ("local_response", "batch", "none")

    def __init__(
        self, *, dropout: float = 0.5, norm: str = "local_response", dropconnect: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(norm=norm, **kwargs)
        check_rate("dropout", dropout)
        # Section 3.5: 96, 256, 384, 384 and 256 kernels (48 + 48, 128 + 128, ... on the two GPUs).
        widths = (96, 256, 384, 384, 256)
        self.features = alexnet_features(
            self.in_channels, widths, conv1_padding=0, activation=self.activation, norm=norm
        )
        self.classifier = fully_connected_head(256 * 6 * 6, self.num_classes, dropout, self.activation, dropconnect)
        self.init_weights(self.init, self.init_std)

    def _init_paper(self) -> None:
        # Section 5: weights from N(0, 0.01^2); biases 1 in conv2, conv4, conv5 and the hidden fully-connected
        # layers (to give the ReLUs positive inputs early on), 0 in conv1, conv3 and FC8.
        init_normal(self, PAPER_INIT_STD)
        for layer in (self.features.conv2, self.features.conv4, self.features.conv5):
            nn.init.ones_(layer.bias)
        for layer in (self.classifier.fc6, self.classifier.fc7):
            nn.init.ones_(layer.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 to pool5: 256 maps of 6x6."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Flatten the 256x6x6 maps and apply FC6, FC7 and FC8."""
        return self.classifier(torch.flatten(features, 1))


class AlexNetTV(ClassifierNet):
    """torchvision's AlexNet for 224x224 images; it keeps PyTorch's default initialisation, as torchvision does."""

    classifier_path = "classifier.fc8"
    native_input_size = (3, 224, 224)
    min_input_size = 63  # conv1 15 -> pool1 7 -> pool2 3 -> pool5 1x1; 62 leaves pool5 a 2x2 input
    norms = ("none", "local_response", "batch")

    def __init__(self, *, dropout: float = 0.5, dropconnect: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_rate("dropout", dropout)
        widths = (64, 192, 384, 256, 256)
        activation = self.activation
        self.features = alexnet_features(
            self.in_channels, widths, conv1_padding=2, activation=activation, norm=self.norm
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))  # the identity at 224x224
        self.classifier = nn.Sequential(
            OrderedDict(
                drop6=nn.Dropout(dropout),  # torchvision drops the inputs of FC6 and FC7, not their outputs
                fc6=DropConnectLinear(256 * 6 * 6, 4096, dropconnect),
                act6=make_activation(activation, 4096, inplace=True),
                drop7=nn.Dropout(dropout),
                fc7=DropConnectLinear(4096, 4096, dropconnect),
                act7=make_activation(activation, 4096, inplace=True),
                fc8=nn.Linear(4096, self.num_classes),
            )
        )
        self.init_weights(self.init, self.init_std)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 to pool5: 256 maps of 6x6 at 224x224."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Pool to 6x6, flatten, and apply FC6, FC7 and FC8."""
        return self.classifier(torch.flatten(self.avgpool(features), 1))

    def convert_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename torchvision's keys (``features.3.weight``) to ours (``features.conv2.weight``)."""
        return rename_layers(state_dict, TORCHVISION_LAYER_NAMES)


@register_model
def alexnet(**kwargs: Any) -> AlexNet:
    """AlexNet of the 2012 paper as one network, 227x227 input (62,378,344 parameters for 1000 classes)."""
    return AlexNet(**kwargs)


@register_model
def alexnet_tv(**kwargs: Any) -> AlexNetTV:
    """torchvision's AlexNet, 224x224 input (61,100,840 parameters for 1000 classes); loads its weights."""
    return AlexNetTV(**kwargs)
