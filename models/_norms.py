"""Normalisation layers by name: the ``norm`` option of the CNN families.

``make_norm(kind, channels)`` returns the layer for a conv layer's ``channels`` maps:

    batch  ``BatchNorm2d``, Ioffe & Szegedy 2015: each channel over the batch and the positions
    layer  ``GroupNorm(1, C)``, layer norm (Ba et al. 2016) of a conv map: each example over all its channels and
           positions, with a learned scale and shift per channel (``nn.LayerNorm`` over (C, H, W) would learn
           one per element and fix the map size)
    group  ``GroupNorm(G, C)``, Wu & He 2018: each example over groups of C/G channels, with G = 32 (their
           default) or, where C is not a multiple of 32 or is below 64, the largest divisor of C up to 32 that
           leaves at least 2 channels a group (16 channels: 8 groups; 36: 18)

``local_response`` (AlexNet's Section 3.3) and ``none`` are options too, placed by the families that take them
(their constants differ by paper). ``NORMS`` names every kind; each family's class names the kinds it accepts in its
``norms`` and refuses the rest at build time (``check_norm``).
"""

from __future__ import annotations

from torch import nn

NORMS = ("none", "batch", "layer", "group", "local_response")
MAX_GROUPS = 32  # Wu & He 2018, Sec. 4: G = 32 by default


def group_count(channels: int) -> int:
    """Groups of ``norm="group"`` for ``channels`` maps: 32, or the largest divisor of ``channels`` up to 32 that
    leaves at least 2 channels a group (1 for a single channel)."""
    return max((g for g in range(1, MAX_GROUPS + 1) if channels % g == 0 and 2 * g <= channels), default=1)


def make_norm(kind: str, channels: int, eps: float = 1e-5) -> nn.Module:
    """The ``kind`` ("batch", "layer", "group" or "none": the identity) normalisation of ``channels`` conv maps;
    ``eps`` is batch norm's."""
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(channels, eps=eps)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "group":
        return nn.GroupNorm(group_count(channels), channels)
    raise ValueError(f"make_norm builds batch, layer, group or no normalisation, not {kind!r}")


def check_norm(model: nn.Module, kind: str) -> None:
    """Raise ``ValueError`` in one line when ``kind`` is not one of the kinds ``model``'s class accepts (``norms``)."""
    if kind not in model.norms:
        accepted = ", ".join(model.norms)
        raise ValueError(f"norm={kind!r} is not available for {type(model).__name__}; accepted: {accepted}")
