"""Network in Network: the CIFAR-10 model of three mlpconv layers and global average pooling.

M. Lin, Q. Chen, S. Yan, "Network In Network", ICLR 2014 (arXiv:1312.4400).

An mlpconv layer (Section 3.1, Figure 1) slides a small multilayer perceptron over the input instead of a linear
filter: a conventional k x k convolution followed by 1x1 convolutions (the "cross channel parametric pooling" of
Section 3.1, the authors' ``cccp`` layers), every layer followed by a ReLU (Eq. 2). Instead of fully-connected layers
the last mlpconv gives one feature map per class, and global average pooling of each map is the class score
(Section 3.2: no parameters to learn, so none to overfit). The CIFAR-10 network (Section 4.1 and 4.2, Figure 2):

    layer      kernel   widths (conv, 1x1, 1x1)   output     where the numbers come from
    mlpconv1   5x5      192, 160, 96              96x32x32   the authors' definition (see below)
    pool1      3x3/2 max, then dropout 0.5        96x16x16   Section 4.1; 3x3/2: the authors' definition
    mlpconv2   5x5      192, 192, 192             192x16x16  the authors' definition
    pool2      3x3/2 max, then dropout 0.5        192x8x8    Section 4.1
    mlpconv3   3x3      192, 192, 10              10x8x8     the authors' definition; 10 maps: Section 3.2
    avgpool    8x8 (global)                       10x1x1     Section 3.2

Section 4.1 gives the structure: "three stacked mlpconv layers", each "followed by a spatial max pooling layer which
downsamples the input image by a factor of two", dropout "on the outputs of all but the last mlpconv layers", and
global average pooling at the top; the widths, kernel sizes and the pools' size are "provided in the supplementary
materials", which are the authors' released definition (github.com/mavenlin/cuda-convnet, ``NIN/``, and the Caffe
model zoo's "NIN-CIFAR10"): 192-160-96 / 192-192-192 / 192-192-10 with 5x5, 5x5 and 3x3 kernels padded to keep the
size, 3x3 pools with stride 2 and dropout 0.5 on the pools' outputs. Section 4.2 sets the widths "to the same number
as in the maxout network" (Goodfellow et al. 2013). The pools round up (cuda-convnet's and Caffe's rule,
``ceil_mode=True``), so 32 -> 16 -> 8. Both pools are max pools, as Section 4.1 says of every mlpconv layer.

Parameters for 10 classes, weights and biases (checked by the tests, with the arithmetic):

    mlpconv1   3*192*25 + 192 + 192*160 + 160 + 160*96 + 96    =  60,928
    mlpconv2   96*192*25 + 192 + 2 * (192*192 + 192)            = 535,104
    mlpconv3   192*192*9 + 192 + 192*192 + 192 + 192*10 + 10    = 370,954
    total                                                         966,986

Layers are named after their mlpconv: ``features.mlpconv1.conv1`` is the 5x5 convolution, ``conv2`` and ``conv3``
its two 1x1 layers. The last 1x1 layer of mlpconv3, the one that gives the class maps, is the classifier
(``classifier.conv3``, then its activation and the global average pooling), so ``forward_features`` ends with
mlpconv3's 192 maps and ``reset_classifier`` replaces the class maps' layer.

``activation`` replaces every ReLU, the one on the class maps included (``models._activations``); ``norm="batch"``
puts batch norm after every convolution but the class maps' one, before its activation (the paper has none:
``norm="none"``). ``dropout`` is the rate of the two dropout layers, active in training mode only.

Initialisation (``init="paper"``): the paper gives none ("we manually set proper initializations for the weights
and the learning rates", Section 4.1, after Krizhevsky et al. 2012); the authors' cuda-convnet definition starts
conv1 from N(0, 0.001^2) and the 1x1 layers from N(0, 0.01^2), tuned with its learning rates by hand. We use
He et al. 2015's normal initialisation for ReLU layers (``init="kaiming_normal"``: variance 2/fan_out, as in ResNet)
for every convolution but the class maps' one, which starts from N(0, 0.01) as torchvision's SqueezeNet's conv10, so
that the first scores are near zero and the first loss near ln(number of classes) (He-initialised class maps start
CIFAR-10 at a loss of about 8); zero biases.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from models._activations import make_activation
from models._base import ClassifierNet, check_rate
from models._init import init_weights
from models._registry import register_model
from models.alexnet import add_conv, init_normal

# The CIFAR-10 network (the authors' definition): each mlpconv's kernel size and the widths of its conv and 1x1
# layers; mlpconv3's last 1x1 layer, one map per class, is the classifier (``NiN.classifier.conv3``).
CIFAR10 = (
    (5, (192, 160, 96)),  # mlpconv1, 32x32
    (5, (192, 192, 192)),  # mlpconv2, 16x16
    (3, (192, 192)),  # mlpconv3, 8x8, then the 1x1 layer to the classes
)


def mlpconv(in_channels: int, kernel_size: int, widths: tuple[int, ...], activation: str, norm: str) -> nn.Sequential:
    """Section 3.1: a ``kernel_size`` convolution (padded to keep the size) to ``widths[0]`` maps, then a 1x1
    convolution to each further width, every layer followed by its activation (Eq. 2)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for index, width in enumerate(widths, start=1):
        size = kernel_size if index == 1 else 1
        add_conv(layers, index, nn.Conv2d(in_channels, width, kernel_size=size, padding=size // 2), activation, norm)
        in_channels = width
    return nn.Sequential(layers)


class NiN(ClassifierNet):
    """Network in Network: the mlpconv layers of ``blocks`` ((kernel size, widths) each), a 3x3/2 max pool and
    dropout after each but the last, then a 1x1 layer to the class maps and global average pooling."""

    classifier_path = "classifier.conv3"
    native_input_size = (3, 32, 32)
    min_input_size = 4  # 4 -> 2 (pool1, rounding up) -> 1 (pool2)
    norms = ("none", "batch")

    def __init__(
        self,
        blocks: tuple[tuple[int, tuple[int, ...]], ...],
        num_classes: int = 10,
        *,
        dropout: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        check_rate("dropout", dropout)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = self.in_channels
        for index, (kernel_size, widths) in enumerate(blocks, start=1):
            layers[f"mlpconv{index}"] = mlpconv(channels, kernel_size, widths, self.activation, self.norm)
            channels = widths[-1]
            if index < len(blocks):
                # Section 4.1: max pooling halves the maps, and dropout on all but the last mlpconv's outputs
                layers[f"pool{index}"] = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
                layers[f"drop{index}"] = nn.Dropout(dropout)
        self.features = nn.Sequential(layers)
        # Section 3.2: the last mlpconv layer's last 1x1 layer gives one map per class (with its ReLU, Eq. 2), and
        # the average of each map is that class's score: no fully-connected layer
        self.classifier = nn.Sequential(
            OrderedDict(
                conv3=nn.Conv2d(channels, num_classes, kernel_size=1),
                act3=make_activation(self.activation, num_classes, inplace=True),
                avgpool=nn.AdaptiveAvgPool2d(1),
            )
        )
        self.init_weights(self.init, self.init_std)

    def _init_paper(self) -> None:
        # the paper gives none (Section 4.1): He et al. 2015 for the ReLU layers, the class maps from N(0, 0.01), zero
        # biases (batch norm, where there is one, the identity)
        init_weights(self.features, "kaiming_normal")
        init_normal(self.classifier, 0.01)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """mlpconv1 to mlpconv3's first two layers: the 192 maps of 8x8 for a 32x32 image."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(features), 1)


@register_model
def nin_cifar10(**kwargs: Any) -> NiN:
    """Network in Network for CIFAR-10 (Section 4.2): 192-160-96 / 192-192-192 / 192-192-10; 966,986 parameters
    for 10 classes."""
    return NiN(CIFAR10, **kwargs)
