"""Model registry: ``create_model(name, **kwargs)`` and ``list_models(pattern)``, as in torchvision and timm."""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from models._pretrained import load_pretrained

Builder = Callable[..., nn.Module]
_MODEL_BUILDERS: dict[str, Builder] = {}


def _takes_more(signature: inspect.Signature) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def _class_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The named arguments of ``cls``: its own and, while an ``__init__`` passes ``**kwargs`` on, those of the nearest
    base that defines ``__init__`` (the chain that the checks of a config follow), each with the default of the class
    nearest to ``cls`` that names it and the kind of the one that declares it. In the order of a signature: the
    positional-or-keyword ones (the base's, then each subclass's), then the keyword-only ones: the family's options,
    then the switches that ``ClassifierNet`` declares (``activation``, ``norm``, ``init``, ``init_std``)."""
    chain = [inspect.signature(cls, eval_str=True)]
    while _takes_more(chain[-1]):
        base = next((c for c in cls.__mro__[1:] if "__init__" in vars(c) and c is not object), None)
        if base is None:
            break
        cls = base
        chain.append(inspect.signature(base, eval_str=True))
    parameters: dict[str, inspect.Parameter] = {}
    declared_at: dict[str, int] = {}  # how far from the base the class is that declares it first
    for depth, signature in enumerate(reversed(chain)):  # the base first
        for name, parameter in signature.parameters.items():
            if parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                parameters[name] = parameter.replace(kind=parameters.get(name, parameter).kind)
                declared_at.setdefault(name, depth)

    def place(name: str) -> tuple[int, int]:
        keyword_only = parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        return parameters[name].kind, -declared_at[name] if keyword_only else declared_at[name]

    return {name: parameters[name] for name in sorted(parameters, key=place)}


def _builder_signature(builder: Builder, exclude: Sequence[str]) -> inspect.Signature:
    """The keyword arguments ``builder`` takes: its own if it lists them all, else (``**kwargs``, as torchvision's
    builders) those of the class it returns, its return annotation (``_class_parameters``): the class's arguments with
    a default (the ones without are the architecture the builder gives: depths, widths), less ``exclude``, with the
    defaults of the keyword arguments the builder names itself."""
    own = inspect.signature(builder, eval_str=True)
    if not _takes_more(own):
        return own
    cls = own.return_annotation
    parameters = [
        own.parameters.get(name, parameter).replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for name, parameter in _class_parameters(cls).items()
        if name not in exclude and (parameter.default is not inspect.Parameter.empty or name in own.parameters)
    ]
    return inspect.Signature(parameters, return_annotation=cls)


def register_model(
    builder: Builder | None = None, *, exclude: Sequence[str] = ()
) -> Builder | Callable[[Builder], Builder]:
    """Register a builder under its own name: ``@register_model def resnet20(**kwargs) -> CifarResNet``.

    A builder with ``**kwargs`` takes the keyword arguments of the class it returns, less those it gives itself
    and those in ``exclude`` (``@register_model(exclude=(...))``). They are its signature (``__signature__``) and
    type hints (``__annotations__``), which ``create_model`` and the checks of a config read with
    ``inspect.signature`` and ``typing.get_type_hints``, as of a builder that spells them out.
    """
    if builder is None:
        return functools.partial(register_model, exclude=exclude)
    name = builder.__name__
    if name in _MODEL_BUILDERS:
        raise ValueError(f"a model named {name!r} is already registered")
    signature = _builder_signature(builder, exclude)
    builder.__signature__ = signature
    builder.__annotations__ = {
        **{key: parameter.annotation for key, parameter in signature.parameters.items()},
        "return": signature.return_annotation,
    }
    _MODEL_BUILDERS[name] = builder
    return builder


def _natural_key(name: str) -> list[str | int]:
    """``name`` split into text and numbers, so that resnet18 sorts before resnet101 (as timm's list_models)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the registered models in natural order (numbers as numbers: resnet18, resnet34, ..., resnet152),
    filtered by an fnmatch ``pattern`` such as ``"resnet*"``."""
    names = sorted(_MODEL_BUILDERS, key=_natural_key)
    return names if pattern is None else fnmatch.filter(names, pattern)


def close_matches(word: str, options: list[str]) -> list[str]:
    """Up to three ``options`` that look like ``word``, the best first, dropping those far behind the best: the
    "did you mean" of an error (model names here; the training code's settings and options too)."""
    scored = sorted(((difflib.SequenceMatcher(None, word, option).ratio(), option) for option in options), reverse=True)
    if not scored or scored[0][0] < 0.6:
        return []
    return [option for score, option in scored[:3] if score >= max(0.6, scored[0][0] - 0.1)]


def did_you_mean(word: str, options: list[str]) -> str:
    """``"did you mean a, b? "`` naming ``close_matches(word, options)``, or ``""`` when none is close: the hint an
    error puts before its list of accepted names."""
    close = close_matches(word, options)
    return f"did you mean {', '.join(close)}? " if close else ""


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    """The builder registered as ``name``; an unknown name raises a ``ValueError`` naming the close matches."""
    try:
        return _MODEL_BUILDERS[name]
    except KeyError:
        hint = did_you_mean(name, list(_MODEL_BUILDERS))
        raise ValueError(f"unknown model {name!r}; {hint}registered models: {', '.join(list_models())}") from None


def create_model(
    name: str, pretrained: str | Path | Mapping[str, torch.Tensor] | None = None, **kwargs: object
) -> nn.Module:
    """Build the registered model ``name`` with the builder's keyword arguments (``num_classes``, ...).

    ``pretrained`` loads weights into it (see ``load_pretrained``): a state dict, a file of one (saved with
    ``torch.save`` or safetensors, ours or torchvision's), or ``"torchvision"`` for torchvision's default ImageNet
    weights. They must fit the model whole, the classifier's number of classes included. As torchvision's models,
    these know no training checkpoint: a checkpoint of ``scripts/train.py`` is refused with a ``ValueError`` that
    names the reader of its network's weights, ``training.checkpoint_io.read_net_weights(path)``, whose state dict
    this takes (``scripts/export.py format=state_dict`` writes it to a file).
    """
    builder = get_model_builder(name)
    accepted = inspect.signature(builder).parameters
    unknown = [key for key in kwargs if key not in accepted]
    if unknown:
        raise TypeError(f"{name} takes no argument {', '.join(map(repr, unknown))}; accepted: {', '.join(accepted)}")
    model = builder(**kwargs)
    if pretrained is not None:
        load_pretrained(model, pretrained, name)
    return model
