"""Named weight-initialisation schemes for the conv and linear layers of any model.

``torch`` keeps the weights PyTorch's layer constructors drew (Kaiming-uniform with a=sqrt(5)); the others follow
Glorot & Bengio 2010 (``xavier_*``), He et al. 2015 (``kaiming_*``, for ReLU networks) and
LeCun et al. 1998 (``lecun_normal``: variance 1/fan_in). Biases start at zero, batch-norm scales at
one, except under ``torch``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

_WEIGHT_INITS: dict[str, Callable[[nn.Parameter], object]] = {
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"),
    "lecun_normal": lambda w: nn.init.normal_(w, std=1 / math.sqrt(nn.init._calculate_fan_in_and_fan_out(w)[0])),
    "orthogonal": nn.init.orthogonal_,
}
INIT_SCHEMES = ("paper", "torch", *_WEIGHT_INITS)


def init_weights(model: nn.Module, scheme: str) -> None:
    """Initialise every conv and linear layer of ``model`` with ``scheme`` (one of ``INIT_SCHEMES`` but paper)."""
    if scheme == "torch":
        return  # the layers keep the weights their constructors drew
    if scheme not in _WEIGHT_INITS:
        raise ValueError(f"unknown init {scheme!r}; accepted: {', '.join(INIT_SCHEMES)}")
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            _WEIGHT_INITS[scheme](module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm | nn.LayerNorm) and module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
