"""Loading torchvision's weights into the zoo's modules.

A family whose parameter names differ from torchvision's implements
``convert_torchvision_state_dict(state_dict) -> state_dict`` on its model class, renaming keys
explicitly; the others load as they are. Nothing is loaded unless every key and shape fits.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn


def load_file(path: str | Path, kind: str) -> Any:
    """What a ``torch.save`` file at ``path`` holds, read with ``weights_only=True``: tensors and plain data,
    never code. A missing file raises ``FileNotFoundError``, anything else unreadable ``ValueError``; both
    messages name the file and ``kind`` ("weights file", "checkpoint")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} is not a readable PyTorch {kind}: {reason}") from err


def read_state_dict(source: Mapping[str, torch.Tensor] | str | Path) -> dict[str, torch.Tensor]:
    """A state dict given as a mapping or as a ``.pth``/``.pt`` file (read with ``weights_only=True``)."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    state_dict = load_file(path, "weights file")
    if isinstance(state_dict, Mapping) and "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{path} holds a {type(state_dict).__name__}, not a state dict")
    return dict(state_dict)


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise ``ValueError`` listing missing and unexpected keys and shape mismatches, if any."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and tuple(state_dict[key].shape) != tuple(value.shape)
    ]
    problems = [
        f"{label} ({len(items)}): {', '.join(items[:8])}{', ...' if len(items) > 8 else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
        if items
    ]
    if problems:
        raise ValueError(f"weights do not fit {type(model).__name__}; nothing was loaded. " + "; ".join(problems))


def load_torchvision_weights(model: nn.Module, source: Mapping[str, torch.Tensor] | str | Path) -> nn.Module:
    """Load a torchvision state dict (a mapping or a file path) into ``model``, renaming keys where ours differ."""
    state_dict = read_state_dict(source)
    convert = getattr(model, "convert_torchvision_state_dict", None)
    if convert is not None:
        state_dict = convert(state_dict)
    check_state_dict(model, state_dict)
    model.load_state_dict(state_dict)
    return model
