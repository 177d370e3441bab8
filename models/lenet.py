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

With biases this is 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706 parameters (``lenet5``). The paper squashes with
a scaled tanh and subsamples by a trainable average; here the activation (any of ``models._activations``) and the
pooling are options (``tanh`` and ``avg`` by default), as are batch norm after C1, C3, C5 and F6 (``norm="batch"``)
and DropConnect on F6 (``dropconnect``). The weights keep PyTorch's default initialisation: the paper's
(``init="paper"``: uniform in +-2.4/F_in, Appendix C) was made for its scaled tanh, and with a plain
tanh it reaches only 95-98% on the bundled digits in 20 epochs against 97.5-99% (8 seeds each).

``lenet5_paper`` is the network as published, layer by layer:
    C1  6 maps, 5x5                                                         156 parameters
    S2  each map: 2x2 sum x trainable coefficient + trainable bias, squashed  12
    C3  16 maps on the subsets of S2 maps in Table I (not all 6)           1,516
    S4  as S2                                                                32
    C5  120 maps, 5x5, on all 16 S4 maps                                  48,120
    F6  84 units                                                          10,164
    output: Euclidean RBF units, y_i = sum_j (x_j - w_ij)^2, with fixed +-1 prototypes
The squashing function is f(a) = 1.7159 tanh(2a/3) (Appendix A), the weights start uniform in
+-2.4/F_in (Appendix C). The trainable parameters add up to 60,000, the paper's figure (Section
II.B). The RBF prototypes were "stylized images" of the characters drawn on a 7x12 bitmap, not given
as data in the paper; here they are fixed random +-1 codes (seeded, a buffer, not trained), and the
logits are -y_i, so softmax cross-entropy stands in for the paper's MAP criterion (Eq. 9).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from models._activations import ScaledTanh, make_activation
from models._base import ClassifierNet
from models._dropconnect import DropConnectLinear
from models._init import DEFAULT_STD
from models._registry import register_model

POOLS: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class _LeNet(ClassifierNet):
    """What both forms share: the 32x32 input, ``features`` (C1 to F6) and ``classifier``, the init."""

    classifier_path = "classifier"
    native_input_size = (1, 32, 32)
    min_input_size = 32
    # Sec. III.A: "the images were centered in a 28x28 field" ... "in a 32x32 field", 2 pixels of padding
    input_field = 32
    features: nn.Sequential
    classifier: nn.Module

    def __init__(self, num_classes: int = 10, in_channels: int = 1, **kwargs: Any) -> None:
        super().__init__(num_classes, in_channels, **kwargs)

    def _init_paper(self) -> None:
        # Appendix C: weights uniform in (-2.4/F_i, 2.4/F_i), F_i the number of inputs of the unit.
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                fan_in = module.weight[0].numel()
                nn.init.uniform_(module.weight, -2.4 / fan_in, 2.4 / fan_in)
                nn.init.uniform_(module.bias, -2.4 / fan_in, 2.4 / fan_in)

    def check_input(self, x: torch.Tensor) -> None:
        expected = (self.in_channels, *self.native_input_size[1:])
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"LeNet-5 takes images of shape (N, {expected[0]}, {expected[1]}, {expected[2]}), "
                f"got {tuple(x.shape)}; resize the data to 32x32 (data.image_size=32)"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """C1 to F6: the 84 features that the output layer classifies."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)


class LeNet5(_LeNet):
    """LeNet-5 for ``in_channels`` x 32 x 32 images."""

    norms = ("none", "batch")  # batch: after C1, C3, C5 and F6, before the activation (Ioffe & Szegedy 2015, Sec. 3.2)

    def __init__(
        self,
        *,
        activation: str = "tanh",
        pool: str = "avg",
        dropconnect: float = 0.0,
        init: str = "torch",
        **kwargs: Any,
    ) -> None:
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; accepted: {', '.join(POOLS)}")
        super().__init__(activation=activation, init=init, **kwargs)
        norm, in_channels = self.norm, self.in_channels
        subsample = POOLS[pool]
        layers: OrderedDict[str, nn.Module] = OrderedDict()

        def unit(index: int, name: str, layer: nn.Module, width: int, batch_norm: type[nn.Module]) -> None:
            # a layer of ``width`` units, its batch norm if asked, and its activation
            layers[name] = layer
            if norm == "batch":
                layers[f"bn{index}"] = batch_norm(width)
            layers[f"act{index}"] = make_activation(activation, width)

        unit(1, "c1", nn.Conv2d(in_channels, 6, kernel_size=5), 6, nn.BatchNorm2d)  # 6 maps of 28x28
        layers["s2"] = subsample(kernel_size=2, stride=2)  # 6 maps of 14x14
        unit(3, "c3", nn.Conv2d(6, 16, kernel_size=5), 16, nn.BatchNorm2d)  # 16 maps of 10x10
        layers["s4"] = subsample(kernel_size=2, stride=2)  # 16 maps of 5x5
        unit(5, "c5", nn.Conv2d(16, 120, kernel_size=5), 120, nn.BatchNorm2d)  # 120 maps of 1x1
        layers["flatten"] = nn.Flatten()
        unit(6, "f6", DropConnectLinear(120, 84, dropconnect), 84, nn.BatchNorm1d)
        self.features = nn.Sequential(layers)
        self.classifier = nn.Linear(84, self.num_classes)
        self.init_weights(self.init, self.init_std)


@register_model
def lenet5(**kwargs: Any) -> LeNet5:
    """LeNet-5 in the 1998 layout with full C3 connections (61,706 parameters for 10 classes)."""
    return LeNet5(**kwargs)


# Table I: the S2 maps (0-5) that feed each of C3's 16 maps.
C3_CONNECTIONS = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),  # contiguous threes
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),  # contiguous fours
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),  # discontinuous fours
    (0, 1, 2, 3, 4, 5),  # all six
)  # fmt: skip


class TrainableSubsampling(nn.Module):
    """S2/S4: the sum of each 2x2 block times a trainable coefficient plus a trainable bias, per map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.coefficient = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block_sum = nn.functional.avg_pool2d(x, kernel_size=2, stride=2) * 4
        return block_sum * self.coefficient.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv(nn.Module):
    """C3: each output map convolves only the input maps Table I connects it to."""

    def __init__(self, connections: tuple[tuple[int, ...], ...], kernel_size: int) -> None:
        super().__init__()
        self.connections = connections
        self.maps = nn.ModuleList(nn.Conv2d(len(inputs), 1, kernel_size) for inputs in connections)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [conv(x[:, list(inputs)]) for conv, inputs in zip(self.maps, self.connections, strict=True)], dim=1
        )


class EuclideanRBF(nn.Module):
    """Output units y_i = sum_j (x_j - w_ij)^2 with fixed +-1 prototypes w_i; returns -y as logits."""

    def __init__(self, in_features: int, num_classes: int, seed: int = 1998) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        codes = torch.randint(0, 2, (num_classes, in_features), generator=generator).float() * 2 - 1
        self.register_buffer("prototypes", codes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(x, self.prototypes).pow(2)


class LeNet5Paper(_LeNet):
    """LeNet-5 exactly as LeCun et al. 1998 describe it: 60,000 trainable parameters.

    Its squashing function and its (absent) normalisation are the paper's, so it takes no ``activation`` or
    ``norm``; DropConnect on F6 it does take.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        dropconnect: float = 0.0,
        init: str = "paper",
        init_std: float = DEFAULT_STD,
    ) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, init=init, init_std=init_std)
        self.features = nn.Sequential(
            OrderedDict(
                c1=nn.Conv2d(in_channels, 6, kernel_size=5),
                act1=ScaledTanh(),
                s2=TrainableSubsampling(6),
                act2=ScaledTanh(),
                c3=PartialConv(C3_CONNECTIONS, kernel_size=5),
                act3=ScaledTanh(),
                s4=TrainableSubsampling(16),
                act4=ScaledTanh(),
                c5=nn.Conv2d(16, 120, kernel_size=5),
                act5=ScaledTanh(),
                flatten=nn.Flatten(),
                f6=DropConnectLinear(120, 84, dropconnect),
                act6=ScaledTanh(),
            )
        )
        self.classifier = EuclideanRBF(84, num_classes)
        self.init_weights(init, init_std)

    def _init_paper(self) -> None:
        super()._init_paper()
        for module in self.modules():
            if isinstance(module, TrainableSubsampling):  # 4 inputs per unit
                nn.init.uniform_(module.coefficient, -2.4 / 4, 2.4 / 4)
                nn.init.uniform_(module.bias, -2.4 / 4, 2.4 / 4)

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = EuclideanRBF(84, num_classes).to(self.classifier.prototypes.device)
        self.num_classes = num_classes


@register_model
def lenet5_paper(**kwargs: Any) -> LeNet5Paper:
    """LeNet-5 as published: partial C3, trainable subsampling, scaled tanh, RBF output (60,000 trainable)."""
    return LeNet5Paper(**kwargs)
