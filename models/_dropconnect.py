"""DropConnect: L. Wan, M. Zeiler, S. Zhang, Y. LeCun, R. Fergus, "Regularization of Neural Networks using
DropConnect", ICML 2013.

Where dropout zeroes a layer's outputs, DropConnect zeroes individual weights: in training a layer computes
r = a((M * W) v) with a mask M of independent Bernoulli(1 - p) entries (the paper's Eq. 2). Here the mask covers
the weight matrix and the bias is kept. Two more simplifications:

- one mask serves the whole mini-batch; the paper draws one per example, which for AlexNet's FC6 would be the
  batch size times 37.7 million mask entries;
- the kept weights are scaled by 1 / (1 - p) in training (as PyTorch's dropout scales the kept units), so that
  E[M * W / (1 - p)] = W and inference uses the full weights W: the simple mean-field inference. The paper
  trains unscaled and infers either with the mean (1 - p) W or, as it prefers, by sampling from a Gaussian
  moment-matched to each unit's input (its Algorithm 2); that sampling is not done here.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def check_dropconnect(rate: float) -> None:
    if not 0 <= rate < 1:
        raise ValueError(f"dropconnect must be in [0, 1), got {rate!r}")


class DropConnectLinear(nn.Linear):
    """``nn.Linear`` whose weights are dropped with probability ``p`` in training; its state dict is nn.Linear's."""

    def __init__(self, in_features: int, out_features: int, p: float = 0.0, bias: bool = True) -> None:
        check_dropconnect(p)
        super().__init__(in_features, out_features, bias=bias)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return super().forward(x)
        keep = torch.empty_like(self.weight).bernoulli_(1 - self.p)
        return F.linear(x, self.weight * keep / (1 - self.p), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"
