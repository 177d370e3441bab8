"""Building objects from the Hydra config, with user mistakes turned into one clear line.

``instantiate(node, key)`` checks each configured value against the type hints of its
``_target_``'s signature before calling it, so ``trainer.max_epochs=abc`` reads
"trainer.max_epochs: expected int or None, got 'abc' (str)" instead of failing deep inside
Lightning, and any error the target raises is reported under the config key that caused it.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig
from omegaconf.errors import MissingMandatoryValue

import models


class UserError(Exception):
    """A mistake in what the user asked for; the command-line scripts print it as one line and exit 2."""


def _signature_hints(target: Callable[..., Any]) -> tuple[inspect.Signature | None, dict[str, Any]]:
    function = target.__init__ if inspect.isclass(target) else target
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None, {}
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # unresolvable forward references: check names only
        hints = {}
    return signature, hints


def _matches(value: Any, hint: Any) -> bool | None:
    """Whether a config value fits a type hint: True, False, or None when the hint is not a simple type."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        results = [_matches(value, arg) for arg in typing.get_args(hint)]
        return True if True in results else (None if None in results else False)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple, Sequence, typing.Sequence):
        return isinstance(value, list | tuple | ListConfig)
    if origin in (dict, Mapping, typing.Mapping):
        return isinstance(value, dict | DictConfig)
    if isinstance(value, DictConfig) and "_target_" in value:
        return None  # a nested object, checked when it is built
    if isinstance(hint, type):
        return isinstance(value, hint)
    return None


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(dict.fromkeys(_describe(arg) for arg in typing.get_args(hint)))
    if origin is typing.Literal:
        return " or ".join(repr(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return "None"
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def check_arguments(target: Callable[..., Any], node: DictConfig, key: str, skip: Sequence[str] = ()) -> None:
    """Raise ``UserError`` for a configured argument that ``target`` does not accept or whose type is wrong."""
    signature, hints = _signature_hints(target)
    if signature is None:
        return
    parameters = signature.parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for name in node:
        if str(name).startswith("_") or name in skip:
            continue
        if name not in parameters:
            if takes_kwargs:
                continue
            accepted = ", ".join(p for p in parameters if p not in ("self", "args", "kwargs"))
            where = f"{target.__module__}.{target.__qualname__}"
            raise UserError(f"{key}.{name}: not an argument of {where}; accepted: {accepted}")
        try:
            value = node[name]
        except MissingMandatoryValue:
            raise UserError(f"{key}.{name} is required: give it on the command line, {key}.{name}=...") from None
        if name in hints and _matches(value, hints[name]) is False:
            raise UserError(f"{key}.{name}: expected {_describe(hints[name])}, got {value!r} ({type(value).__name__})")


def instantiate(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(node, **kwargs)`` with its arguments checked and its errors named by ``key``."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise UserError(f"{key}: expected a config with a _target_, got {node!r}")
    try:
        target = hydra.utils.get_object(node._target_)
    except Exception:
        raise UserError(f"{key}._target_: cannot import {node._target_!r}") from None
    check_arguments(target, node, key)
    if target is models.create_model:  # check the arguments against the named model's builder
        try:
            builder = models.get_model_builder(node.get("name"))
        except ValueError as err:
            raise UserError(f"{key}: {err}") from None
        check_arguments(builder, node, key, skip=("name", "pretrained"))
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except hydra.errors.InstantiationException as err:
        cause = err.__cause__ or err
        raise UserError(f"{key}: {cause}") from err
