"""torch.hub entry points: one per registered model, named as in ``models.list_models()``.

    model = torch.hub.load("/path/to/classicnets", "resnet50", source="local", pretrained="resnet50.pth")

Each takes ``pretrained`` (None, a weights file or ``"torchvision"``; see ``models.load_pretrained``) and the
keyword arguments of the model's builder (``num_classes``, ``in_channels``, ...).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

import models

dependencies = ["torch", "torchvision"]

Pretrained = str | Path | Mapping[str, torch.Tensor] | None

PRETRAINED_DOC = """
pretrained: None for the builder's own initialisation, or weights to load (see models.load_pretrained): a state
    dict, a file of one (saved with torch.save or safetensors, ours or torchvision's, read as tensors only, never
    code; scripts/export.py format=state_dict writes one from a checkpoint of scripts/train.py), or "torchvision"
    for torchvision's ImageNet weights (downloaded). They must fit the model whole: for another number of classes,
    build with theirs and call reset_classifier(n).
"""


def _entry_point(name: str) -> Callable[..., nn.Module]:
    """The hub entry point of the registered model ``name``: ``models.create_model(name, pretrained, **kwargs)``."""
    builder = models.get_model_builder(name)

    def entry_point(*, pretrained: Pretrained = None, **kwargs: object) -> nn.Module:
        return models.create_model(name, pretrained=pretrained, **kwargs)

    parameters = inspect.signature(builder).parameters.values()
    entry_point.__signature__ = inspect.Signature(
        [
            inspect.Parameter("pretrained", inspect.Parameter.KEYWORD_ONLY, default=None),
            *(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY) for parameter in parameters),
        ]
    )
    entry_point.__name__ = entry_point.__qualname__ = name
    entry_point.__doc__ = (
        f"{inspect.getdoc(builder)}\n{PRETRAINED_DOC}\n"
        f"The other keyword arguments, those of the builder: models.{name}{inspect.signature(builder)}"
    )
    return entry_point


for _name in models.list_models():
    globals()[_name] = _entry_point(_name)
del _name
