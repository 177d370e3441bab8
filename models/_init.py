"""Named weight-initialisation schemes for the conv and linear layers of any model.

``torch`` keeps the weights PyTorch's layer constructors drew (Kaiming-uniform with a=sqrt(5)); the others follow
Glorot & Bengio 2010 (``xavier_*``), He et al. 2015 (``kaiming_*``, for ReLU networks), LeCun et al. 1998
(``lecun_normal``: variance 1/fan_in), Saxe et al. 2014 (``orthogonal``) and Martens 2010 (``sparse``: each unit
gets 15 non-zero incoming weights from N(0, 1), the rest zero, as Sutskever et al. 2013 restate it). ``normal``
draws "small random numbers", N(0, std^2) with std 0.01 unless given (a model's ``init_std``); ``zeros`` sets
every weight to zero, the textbook failure: the units of a layer stay identical (and in a ReLU network get no
gradient at all). Biases start at zero, normalisation scales at one, except under ``torch``; PReLU and maxout
parameters keep their own starting values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

SPARSE_CONNECTIONS = 15  # Martens 2010, as restated by Sutskever et al. 2013: 15 random incoming connections a unit
DEFAULT_STD = 0.01


def sparse_(weight: torch.Tensor, connections: int = SPARSE_CONNECTIONS) -> torch.Tensor:
    """Give each unit (a row of a linear weight, a filter of a conv) ``connections`` weights from N(0, 1) at random
    positions among its fan-in and zeros elsewhere; all of them if the fan-in is smaller.

    ``nn.init.sparse_`` is not used: it zeroes a fraction of each *column* (of each input's outgoing weights), so
    the number of non-zero weights per unit varies, and it takes 2-D weights only.
    """
    with torch.no_grad():
        rows = weight.reshape(weight.shape[0], -1)
        count = min(connections, rows.shape[1])
        chosen = torch.rand_like(rows).topk(count, dim=1).indices
        values = torch.zeros_like(rows).scatter_(1, chosen, torch.randn(rows.shape[0], count, dtype=rows.dtype))
        return weight.copy_(values.view_as(weight))


_WEIGHT_INITS: dict[str, Callable[[torch.Tensor], object]] = {
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"),
    "lecun_normal": lambda w: nn.init.normal_(w, std=1 / math.sqrt(w[0].numel())),  # fan-in: in x kernel size
    "orthogonal": nn.init.orthogonal_,
    "sparse": sparse_,
    "zeros": nn.init.zeros_,
}
INIT_SCHEMES = ("paper", "torch", *_WEIGHT_INITS, "normal")
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


def init_weights(model: nn.Module, scheme: str, std: float = DEFAULT_STD) -> None:
    """Initialise every conv and linear layer of ``model`` with ``scheme`` (one of ``INIT_SCHEMES`` but paper);
    ``std`` is the standard deviation of ``normal``."""
    if scheme == "torch":
        return  # the layers keep the weights their constructors drew
    if scheme == "normal":
        if not std > 0:
            raise ValueError(f"init_std must be positive, got {std!r}")
        weight_init = partial(nn.init.normal_, mean=0.0, std=std)
    elif scheme in _WEIGHT_INITS:
        weight_init = _WEIGHT_INITS[scheme]
    else:
        raise ValueError(f"unknown init {scheme!r}; accepted: {', '.join(INIT_SCHEMES)}")
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            weight_init(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, NORM_LAYERS) and module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
