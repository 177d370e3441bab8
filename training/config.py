"""Building objects from the Hydra config, with user mistakes turned into one clear line.

``instantiate(node, key)`` checks each configured value against the type hints of its
``_target_``'s signature before calling it, so ``trainer.max_epochs=abc`` reads
"trainer.max_epochs: expected int or None, got 'abc' (str)" instead of failing deep inside
Lightning, and any error the target raises is reported under the config key that caused it.
"""

from __future__ import annotations

import inspect
import math
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

import models


class UserError(Exception):
    """A mistake in what the user asked for; the command-line scripts print it as one line and exit 2."""


# Settings where an infinite value has a meaning: the order of a p-norm (inf: the largest absolute value). Every other
# number of a config (a learning rate, momentum, weight decay, betas, label smoothing, dropout...) must be finite.
INFINITY_ALLOWED = ("norm_type",)
# The range of arguments that their targets take unchecked (torch's StepLR a step_size of -2, Lightning a negative
# gradient_clip_val, a monitoring callback a negative max_images), by the argument's name in any
# target: the smallest and the largest accepted value (None: no bound).
RANGES: dict[str, tuple[float | None, float | None]] = {
    "num_classes": (1, None),
    "image_size": (1, None),
    "step_size": (1, None),
    "gamma": (0, None),
    "gradient_clip_val": (0, None),
    "every_n_steps": (1, None),
    "every_n_epochs": (1, None),
    "max_images": (0, None),
    "last_every_n_train_steps": (0, None),
}


def _out_of_range(name: str, value: Any) -> str | None:
    """What ``RANGES`` accepts for the argument ``name`` when ``value`` is a number outside it, else None."""
    smallest, largest = RANGES.get(name, (None, None))
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return None
    if (smallest is not None and value < smallest) or (largest is not None and value > largest):
        return f"a number from {smallest} to {largest}" if largest is not None else f"{smallest} or more"
    return None


def _non_finite(value: Any, allow_infinity: bool) -> float | None:
    """The first NaN (or, unless ``allow_infinity``, infinite) float in ``value``, a number or a list of them."""
    if isinstance(value, float) and (math.isnan(value) or (math.isinf(value) and not allow_infinity)):
        return value
    if isinstance(value, ListConfig | list | tuple):
        return next((bad for item in value if (bad := _non_finite(item, allow_infinity)) is not None), None)
    return None


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
        if _non_finite(value, name in INFINITY_ALLOWED) is not None:
            numbers = "finite numbers" if isinstance(value, ListConfig) else "a finite number"
            raise UserError(f"{key}.{name}: expected {numbers}, got {value!r}")
        accepted = _out_of_range(str(name), value)
        if accepted is not None:
            raise UserError(f"{key}.{name}: expected {accepted}, got {value!r}")
    if inspect.isclass(target) and takes_kwargs:  # the rest usually goes to the base class's __init__
        base = next((cls for cls in target.__mro__[1:] if "__init__" in vars(cls) and cls is not object), None)
        if base is not None:
            check_arguments(base, node, key, [*skip, *parameters])


def check_node(node: DictConfig, key: str, skip: Sequence[str] = ()) -> Callable[..., Any]:
    """The ``_target_`` of ``node``, after ``check_arguments`` (and, for ``models.create_model``, the named model's
    builder's arguments); ``UserError`` for a target that cannot be imported or an argument it does not take."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise UserError(f"{key}: expected a config with a _target_, got {node!r}")
    try:
        target = hydra.utils.get_object(node._target_)
    except Exception:
        raise UserError(f"{key}._target_: cannot import {node._target_!r}") from None
    check_arguments(target, node, key, skip)
    if target is models.create_model:  # check the arguments against the named model's builder
        try:
            builder = models.get_model_builder(node.get("name"))
        except ValueError as err:
            raise UserError(f"{key}: {err}") from None
        check_arguments(builder, node, key, skip=(*skip, "name", "pretrained"))
    return target


def check_config(cfg: DictConfig, skip: Mapping[str, Sequence[str]] = types.MappingProxyType({})) -> None:
    """Check every node with a ``_target_`` in ``cfg``, at any depth, as ``instantiate`` would, before anything is
    built: a wrong type or a non-finite number is reported at once, not after the data has been read. ``skip``
    names, per node key, the settings that are not arguments of the target (a scheduler's ``interval``)."""

    def visit(node: Any, key: str) -> None:
        if isinstance(node, DictConfig):
            if "_target_" in node:
                check_node(node, key, skip.get(key, ()))
            for name in node:
                try:
                    child = node[name]
                except MissingMandatoryValue:  # an argument: reported by check_node; elsewhere by who reads it
                    continue
                visit(child, f"{key}.{name}" if key else str(name))
        elif isinstance(node, ListConfig):
            for index, item in enumerate(node):
                visit(item, f"{key}[{index}]")

    for name in cfg:
        if name not in ("hydra", "paths"):
            visit(cfg[name], str(name))


def instantiate(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(node, **kwargs)`` with its arguments checked and its errors named by ``key``."""
    check_node(node, key)
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except hydra.errors.InstantiationException as err:
        cause = err.__cause__ or err
        raise UserError(f"{key}: {cause}") from err


# Trainer settings that Lightning takes unchecked although they train nothing (max_epochs=0) or make no sense (a
# validation every 0 epochs): the smallest accepted value and the others accepted (-1: no limit; null: the default).
TRAINER_COUNTS: dict[str, tuple[int, tuple[int | None, ...]]] = {
    "max_epochs": (1, (-1, None)),
    "max_steps": (1, (-1, None)),
    "min_epochs": (0, (None,)),
    "min_steps": (0, (None,)),
    "num_nodes": (1, ()),
    "check_val_every_n_epoch": (1, (None,)),
    "accumulate_grad_batches": (1, ()),
    "log_every_n_steps": (1, (None,)),
}
# Trainer fractions (or batch counts) of which 0 trains nothing or validates every 0 batches.
TRAINER_POSITIVE = ("limit_train_batches", "val_check_interval")


def check_trainer(node: DictConfig, key: str = "trainer") -> None:
    """Raise ``UserError`` for a trainer setting that Lightning accepts although it trains nothing or makes no
    sense: ``max_epochs=0`` (which ends at once with an untrained model's metrics), a negative ``min_epochs``..."""
    for name, (smallest, others) in TRAINER_COUNTS.items():
        value = node.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value < smallest and value not in others:
            accepted = " or ".join(["null" if other is None else str(other) for other in others])
            nothing = "; 0 trains nothing" if value == 0 and name.startswith("max") else ""
            raise UserError(
                f"{key}.{name}: expected {smallest} or more{f' (or {accepted})' if accepted else ''}, got {value}"
                f"{nothing}"
            )
    for name in TRAINER_POSITIVE:
        value = node.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
            raise UserError(f"{key}.{name}: expected a positive number (a fraction or a count), got {value}")


def warn_zero_learning_rate(cfg: DictConfig) -> None:
    """Print one warning line when ``optimizer.lr`` is 0 (and ``lr_find`` does not replace it): the run goes on, but
    no weight changes."""
    if not cfg.get("lr_find") and (cfg.get("optimizer") or {}).get("lr") == 0:
        print(
            "warning: optimizer.lr=0: no weight will change, and the model stays as initialised (at chance); "
            "give a positive learning rate, or lr_find=true for a suggestion",
            file=sys.stderr,
        )


def check_settings(cfg: DictConfig, defaults: DictConfig) -> None:
    """Raise ``UserError`` for a setting left unset (``???``), and for a switch, a top-level setting that is true or
    false in ``defaults`` (the script's own config file), given another value (``overwrite=yes`` is not true)."""
    try:
        missing = sorted(OmegaConf.missing_keys(cfg))  # resolves every interpolation on the way
    except InterpolationResolutionError as err:
        raise UserError(f"{err.full_key}: {str(err).splitlines()[0]}") from None
    if missing:
        raise UserError(f"{missing[0]} is required: give it on the command line, {missing[0]}=...")
    for key, default in OmegaConf.to_container(defaults, resolve=False).items():
        value = cfg.get(key)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise UserError(f"{key}: expected true or false, got {value!r}")
