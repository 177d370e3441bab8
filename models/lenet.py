"""LeNet-5.

Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), 1998. Section II.B and Fig. 2 give the layout followed here:

    input 1x32x32
    C1  conv 6@5x5     -> 6x28x28
    S2  subsample 2x2  -> 6x14x14
    C3  conv 16@5x5    -> 16x10x10   (full connections here; the paper's partial table is lenet5_paper)
    S4  subsample 2x2  -> 16x5x5
    C5  conv 120@5x5   -> 120x1x1
    F6  full 84
    output  full 10    (the paper's Euclidean RBF units are replaced by a linear layer for softmax)

With biases this is 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706 parameters. The paper squashes with
a scaled tanh and subsamples by a trainable average; here the activation and the pooling are options
(``tanh`` and ``avg`` by default).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from models._registry import register_model

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
POOLS: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


def _choice(kind: str, name: str, options: dict[str, type[nn.Module]]) -> type[nn.Module]:
    if name not in options:
        raise ValueError(f"unknown {kind} {name!r}; accepted: {', '.join(options)}")
    return options[name]


class LeNet5(nn.Module):
    """LeNet-5 for ``in_channels`` x 32 x 32 images."""

    input_size = (32, 32)

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, activation: str = "tanh", pool: str = "avg"
    ) -> None:
        super().__init__()
        act = _choice("activation", activation, ACTIVATIONS)
        subsample = _choice("pool", pool, POOLS)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.features = nn.Sequential(
            OrderedDict(
                c1=nn.Conv2d(in_channels, 6, kernel_size=5),  # 6 maps of 28x28
                act1=act(),
                s2=subsample(kernel_size=2, stride=2),  # 6 maps of 14x14
                c3=nn.Conv2d(6, 16, kernel_size=5),  # 16 maps of 10x10
                act3=act(),
                s4=subsample(kernel_size=2, stride=2),  # 16 maps of 5x5
                c5=nn.Conv2d(16, 120, kernel_size=5),  # 120 maps of 1x1
                act5=act(),
                flatten=nn.Flatten(),
                f6=nn.Linear(120, 84),
                act6=act(),
            )
        )
        self.classifier = nn.Linear(84, num_classes)

    def _check_input(self, x: torch.Tensor) -> None:
        expected = (self.in_channels, *self.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"LeNet-5 takes images of shape (N, {expected[0]}, {expected[1]}, {expected[2]}), "
                f"got {tuple(x.shape)}; resize the data to 32x32 (data.image_size=32)"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """C1 to F6: the 84 features that the output layer classifies."""
        self._check_input(x)
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the output layer with a freshly initialised one for ``num_classes`` classes."""
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.classifier.in_features, num_classes)


@register_model
def lenet5(num_classes: int = 10, in_channels: int = 1, activation: str = "tanh", pool: str = "avg") -> LeNet5:
    """LeNet-5 in the 1998 layout with full C3 connections (61,706 parameters for 10 classes)."""
    return LeNet5(num_classes=num_classes, in_channels=in_channels, activation=activation, pool=pool)
