"""Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks": the network's layers by name.

The deconvnet projection, receptive fields and top patches (Section 2.1, Figure 2) build on ``find_layer``.
"""

from __future__ import annotations

from torch import nn

from models import close_matches


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` in ``model.named_modules()`` (``"features.3"``); a ``ValueError`` in one line
    naming the close matches and the accepted names otherwise."""
    layers = {path: module for path, module in model.named_modules() if path}
    if name in layers:
        return layers[name]
    close = close_matches(name, list(layers))
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ValueError(f"{type(model).__name__} has no layer {name!r}; {hint}accepted: {', '.join(layers)}")
