"""Regularisers: which parameters are weights, penalties added to the loss, and the max-norm constraint.

Weight decay itself is the optimizer's ``weight_decay`` (every torch optimizer has it; AdamW's is the
decoupled form): ``TrainingModule.configure_optimizers`` applies it to the weights only, with biases and
normalisation parameters in a second parameter group that is not decayed. The classes here are the
``regularizer`` config group's targets (``regularizer=l1|elastic_net|max_norm``).
"""

from __future__ import annotations

import torch
from torch import nn

from models import ChannelMaxout

NORMALIZATION_LAYERS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.GroupNorm,
)  # fmt: skip
# layers whose matrices are not weights to decay: normalisation, and the per-channel pieces of a maxout activation
NOT_WEIGHT_LAYERS = (*NORMALIZATION_LAYERS, ChannelMaxout)


def split_weights(module: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """The trainable parameters of ``module`` as (weights, others).

    Weights are the matrices and kernels (two or more dimensions) of layers other than normalisation layers
    and activations; the others are biases, normalisation scales and shifts, activation parameters (PReLU's
    slopes, maxout's pieces), and any other vector or scalar.
    """
    weights, others = [], []
    for layer in module.modules():
        for parameter in layer.parameters(recurse=False):
            if not parameter.requires_grad:
                continue
            is_weight = parameter.ndim >= 2 and not isinstance(layer, NOT_WEIGHT_LAYERS)
            (weights if is_weight else others).append(parameter)
    return weights, others


class Regularizer:
    """A penalty added to the training loss and a constraint applied after each optimizer step; both do nothing here."""

    def penalty(self, weights: list[nn.Parameter]) -> torch.Tensor | None:
        """The term added to the loss, computed from the network's weights (``split_weights``); None for none."""
        return None

    def constrain(self, module: nn.Module) -> None:
        """Change the parameters of ``module`` in place after an optimizer step."""


class ElasticNet(Regularizer):
    """``l1 * sum |w| + l2 * sum w^2`` over the weights (Zou & Hastie 2005), added to the loss; biases are free.

    The L2 term is the squared norm itself, as in the CS231n notes' ``lambda1 |w| + lambda2 w^2``, so it
    pulls a weight with gradient ``2 * l2 * w``.
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        if l1 < 0 or l2 < 0:
            raise ValueError(f"the penalty strengths must not be negative, got l1={l1}, l2={l2}")
        self.l1 = l1
        self.l2 = l2

    def penalty(self, weights: list[nn.Parameter]) -> torch.Tensor | None:
        if not weights:
            return None
        total = torch.zeros((), device=weights[0].device)
        if self.l1:
            total = total + self.l1 * torch.stack([w.abs().sum() for w in weights]).sum()
        if self.l2:
            total = total + self.l2 * torch.stack([w.square().sum() for w in weights]).sum()
        return total


class L1(ElasticNet):
    """``l1 * sum |w|`` over the weights, added to the loss: it drives weights to exactly zero (sparse weights)."""

    def __init__(self, l1: float) -> None:
        super().__init__(l1=l1)


class MaxNorm(Regularizer):
    """After each step, rescale each unit's incoming weight vector to a norm of at most ``max_norm``.

    Srivastava et al. 2014 (dropout), Section 5.1: "constraining the norm of the incoming weight vector at
    each hidden unit to be upper bounded by a fixed constant c", typically 3 or 4. A unit is a row of a
    ``Linear`` weight, and an output filter (all its input channels and taps) of a convolution. Biases,
    recurrent and normalisation parameters are left alone, and so are frozen layers (fine-tuning's).
    """

    def __init__(self, max_norm: float) -> None:
        if max_norm <= 0:
            raise ValueError(f"max_norm must be positive, got {max_norm}")
        self.max_norm = max_norm

    @torch.no_grad()
    def constrain(self, module: nn.Module) -> None:
        for layer in module.modules():
            if isinstance(layer, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d) and layer.weight.requires_grad:
                layer.weight.renorm_(p=2, dim=0, maxnorm=self.max_norm)
