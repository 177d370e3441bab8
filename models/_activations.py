"""Activation functions by name: the ``activation`` option of every CNN family.

``make_activation(name, channels)`` returns a fresh module for one place of a network (PReLU and maxout have
parameters of their own, one per channel, so no module is shared between places):

    sigmoid      1 / (1 + e^-x)
    tanh         tanh(x)
    scaled_tanh  1.7159 tanh(2x/3), LeCun et al. 1998, Appendix A (LeNet-5's squashing function)
    relu         max(0, x), Nair & Hinton 2010; Krizhevsky et al. 2012
    leaky_relu   max(0.01x, x), Maas et al. 2013
    prelu        max(a x, x) with a learned a per channel, starting at 0.25 (He et al. 2015, Eq. 1 and Sec. 2.1)
    rrelu        leaky with a slope drawn from U(1/8, 1/3) per element in training (Xu et al. 2015: x / U(3, 8)),
                 at eval PyTorch's mean slope (1/8 + 1/3) / 2 (the paper divides by the mean divisor 5.5 instead)
    elu          x if x > 0 else e^x - 1, Clevert et al. 2016
    selu         1.0507 elu(x) with alpha 1.6733, Klambauer et al. 2017
    softplus     log(1 + e^x), Dugas et al. 2001
    relu6        min(max(0, x), 6), Krizhevsky 2010
    maxout       max_j (a_j x + b_j) over k learned pieces per channel (``ChannelMaxout``; Goodfellow et al. 2013)

``Maxout`` is Goodfellow et al.'s layer itself, k affine maps of the input and a max over them per unit; it
replaces a linear layer and its activation together, so it is offered as a layer, not as an ``activation``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

MAXOUT_PIECES = 2


class ScaledTanh(nn.Module):
    """f(a) = A tanh(S a) with A = 1.7159 and S = 2/3 (LeCun et al. 1998, Appendix A), so that f(1) = 1, f(-1) = -1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(2 / 3 * x)


class ChannelMaxout(nn.Module):
    """Maxout as a drop-in activation: h = max_j (a_j z + b_j), j = 1..k, with learned a_j and b_j per channel.

    It takes and returns the same shape, (N, C) or (N, C, H, W), so it can stand wherever a ReLU stands.
    Goodfellow et al. 2013 (Eq. 1) define a maxout unit as h_i(x) = max_j (x^T W_ij + b_ij): k affine maps of the
    layer's *input*, which is a layer k times as wide with a max over each group of k units (``Maxout`` below). Here
    the k pieces are affine maps of the unit's one pre-activation z = w_i^T x + c_i, which is Goodfellow's unit with
    the k weight vectors of a unit tied to multiples a_j w_i of one vector: like his, it learns a convex
    piecewise-linear activation per unit (his Sec. 3), but only of z, and it costs 2k parameters per channel
    instead of k times the previous layer's weights. With channels=1 the pieces are shared by every channel.

    The pieces start with slopes spread evenly from 0 to 1 and meet at knots spread over [-1, 1], so the function
    starts as a ReLU (k = 2: slopes 0 and 1 meeting at 0) or a ReLU smoothed over [-1, 1] (k > 2), with every piece
    the maximum somewhere and so receiving gradient.
    """

    def __init__(self, channels: int = 1, pieces: int = MAXOUT_PIECES) -> None:
        super().__init__()
        if pieces < 2:
            raise ValueError(f"maxout needs at least 2 pieces, got {pieces}")
        self.pieces = pieces
        slopes = [j / (pieces - 1) for j in range(pieces)]
        knots = [0.0] if pieces == 2 else [-1 + 2 * j / (pieces - 2) for j in range(pieces - 1)]
        biases = [0.0]
        for j in range(1, pieces):  # continuous at knot j-1: a_{j-1} t + b_{j-1} = a_j t + b_j
            biases.append(biases[-1] + (slopes[j - 1] - slopes[j]) * knots[j - 1])
        self.slope = nn.Parameter(torch.tensor(slopes).repeat(channels, 1))  # (C, k)
        self.bias = nn.Parameter(torch.tensor(biases).repeat(channels, 1))  # (C, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (self.slope.shape[0], *(1,) * (x.dim() - 2), self.pieces)  # (C, 1, 1, k) for maps, (C, k) for vectors
        return (x.unsqueeze(-1) * self.slope.view(shape) + self.bias.view(shape)).amax(dim=-1)

    def extra_repr(self) -> str:
        return f"{self.slope.shape[0]}, pieces={self.pieces}"


class Maxout(nn.Module):
    """Goodfellow et al. 2013's maxout layer (Eq. 1): h_i(x) = max_j z_ij with z_ij = x^T W_ij + b_ij, j = 1..k.

    A linear layer of ``out_features * pieces`` units whose consecutive groups of ``pieces`` are max-pooled; it
    stands for a linear layer and its activation together. The conv form is the same max over groups of k maps of
    a conv layer k times as wide.
    """

    def __init__(self, in_features: int, out_features: int, pieces: int = MAXOUT_PIECES) -> None:
        super().__init__()
        self.out_features = out_features
        self.pieces = pieces
        self.linear = nn.Linear(in_features, out_features * pieces)  # row i * k + j holds W_ij, b_ij

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).unflatten(-1, (self.out_features, self.pieces)).amax(dim=-1)


# name -> factory(channels, inplace); inplace is passed to the modules that can overwrite their input
_FACTORIES: dict[str, Callable[[int, bool], nn.Module]] = {
    "sigmoid": lambda channels, inplace: nn.Sigmoid(),
    "tanh": lambda channels, inplace: nn.Tanh(),
    "scaled_tanh": lambda channels, inplace: ScaledTanh(),
    "relu": lambda channels, inplace: nn.ReLU(inplace=inplace),
    "leaky_relu": lambda channels, inplace: nn.LeakyReLU(0.01, inplace=inplace),
    "prelu": lambda channels, inplace: nn.PReLU(channels, init=0.25),
    "rrelu": lambda channels, inplace: nn.RReLU(1 / 8, 1 / 3, inplace=inplace),
    "elu": lambda channels, inplace: nn.ELU(inplace=inplace),
    "selu": lambda channels, inplace: nn.SELU(inplace=inplace),
    "softplus": lambda channels, inplace: nn.Softplus(),
    "relu6": lambda channels, inplace: nn.ReLU6(inplace=inplace),
    "maxout": lambda channels, inplace: ChannelMaxout(channels),
}
ACTIVATIONS = tuple(_FACTORIES)


def make_activation(name: str, channels: int = 1, inplace: bool = False) -> nn.Module:
    """A new ``name`` activation for a layer of ``channels`` channels (features); ``inplace`` where it allows.

    Only PReLU and maxout use ``channels``: one parameter set per channel (1 shares it across all of them).
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown activation {name!r}; accepted: {', '.join(ACTIVATIONS)}")
    return _FACTORIES[name](channels, inplace)
