"""Stochastic depth: G. Huang, Y. Sun, Z. Liu, D. Sedra, K. Q. Weinberger, "Deep Networks with Stochastic Depth",
ECCV 2016.

In training, the residual branch f_l of block l is kept with probability p_l and dropped otherwise, so the block is
the identity (its shortcut; Eq. 2 and 3, Section 3): H_l = ReLU(b_l f_l(H_{l-1}) + id(H_{l-1})) with b_l a Bernoulli
variable. The survival probabilities decay linearly from p_0 = 1 at the input to p_L at the last of the L blocks
(Eq. 4): p_l = 1 - l / L (1 - p_L). A family's switch ``drop_path`` is 1 - p_L, the drop probability of the last
block, so block l drops with probability l / L * drop_path; ``drop_path=0.5`` is the paper's p_L = 0.5.

One draw decides a block for the whole mini-batch ("for each mini-batch, randomly select sets of layers and remove
their transformation functions", Section 3): torchvision's ``StochasticDepth(p, mode="batch")``. (Its "row" mode,
one draw per sample, is the variant later networks use; the paper's is "batch".) The branch is still computed and
multiplied by zero, so training here is not faster than without, as the paper's is.

At evaluation the paper keeps every branch and scales it by its survival probability, H_l = ReLU(p_l f_l + id)
(Eq. 5). torchvision instead scales a kept branch by 1 / p_l in training and leaves it unscaled at evaluation: the
same network in expectation (E[b_l / p_l f_l] = f_l), and at evaluation the block is the plain residual sum, the
same function as the network trained without stochastic depth with the same weights.

``ResidualBlock`` is the base of a block with a residual branch: its forward passes the branch's output through
``drop_residual`` before adding the shortcut. ``add_stochastic_depth(model, drop_path)`` gives each block its rate
by Eq. 4; with ``drop_path=0`` it adds nothing, so the network, its modules and its state dict are the plain one's
(the ``StochasticDepth`` layers have no parameters or buffers in any case).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from models._base import check_rate


class ResidualBlock(nn.Module):
    """A block ``y = g(f(x) + shortcut(x))`` whose residual branch ``f`` stochastic depth may drop: the subclass's
    forward passes ``f(x)`` through ``drop_residual``."""

    def __init__(self) -> None:
        super().__init__()
        self.drop_path: StochasticDepth | None = None  # set by add_stochastic_depth; None keeps the branch always

    def drop_residual(self, branch: torch.Tensor) -> torch.Tensor:
        """``branch`` in training dropped for the whole mini-batch with the block's rate (kept ones scaled by 1 /
        survival probability); unchanged at evaluation and without stochastic depth."""
        return branch if self.drop_path is None else self.drop_path(branch)


def drop_path_rates(num_blocks: int, drop_path: float) -> list[float]:
    """Eq. 4: the drop probability of blocks 1 to ``num_blocks`` (L), l / L * ``drop_path`` for block l."""
    return [index / num_blocks * drop_path for index in range(1, num_blocks + 1)]


def add_stochastic_depth(model: nn.Module, drop_path: float) -> None:
    """Give the ``ResidualBlock``s of ``model``, in the order of ``model.modules()`` (the order they run in), the
    rates of Eq. 4 for a last block that drops with probability ``drop_path``; 0 adds nothing. A rate outside
    [0, 1) is refused in one line."""
    check_rate("drop_path", drop_path)
    if drop_path == 0:
        return
    blocks = [module for module in model.modules() if isinstance(module, ResidualBlock)]
    for block, rate in zip(blocks, drop_path_rates(len(blocks), drop_path), strict=True):
        block.drop_path = StochasticDepth(rate, mode="batch")
