"""Building objects from the Hydra config, with user mistakes turned into one clear line.

``instantiate(node, key)`` checks each configured value against the type hints of its
``_target_``'s signature before calling it, so ``trainer.max_epochs=abc`` reads
"trainer.max_epochs: expected int or None, got 'abc' (str)" instead of failing deep inside
Lightning, and any error the target raises is reported under the config key that caused it.

``check_stored_config(config, origin)`` vets a run config read from a file (a checkpoint's): untrusted data, it may
name only the ``_target_``s that the project's own configs (``configs/``) name at the same place, and hold plain
values, so that rebuilding from it creates the project's own objects and never runs what a file names.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import itertools
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

import models

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
HYDRA_KEY = re.compile(r"_\w+_")  # Hydra's own keys: _target_, _args_, _partial_, _recursive_, _convert_
PACKAGE_HEADER = re.compile(r"#\s*@package\s+(\S+)")


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


def accepted_arguments(target: Callable[..., Any]) -> tuple[dict[str, Any], bool]:
    """The named arguments ``target`` takes, each with its type hint (``Any`` where it has none), and whether it also
    takes any other name. A class whose ``__init__`` passes ``**kwargs`` on takes its base classes' arguments too:
    the nearest base that defines ``__init__``, and so on up while each passes ``**kwargs`` on."""
    accepted: dict[str, Any] = {}
    while True:
        signature, hints = _signature_hints(target)
        if signature is None:
            return accepted, True
        for name, parameter in signature.parameters.items():
            if parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                accepted.setdefault(name, hints.get(name, Any))
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
            return accepted, False
        base = None
        if inspect.isclass(target):
            base = next((cls for cls in target.__mro__[1:] if "__init__" in vars(cls) and cls is not object), None)
        if base is None:
            return accepted, True
        target = base


def check_arguments(target: Callable[..., Any], node: DictConfig, key: str, skip: Sequence[str] = ()) -> None:
    """Raise ``UserError`` for a configured argument that ``target`` does not accept or whose type is wrong."""
    accepted, takes_any = accepted_arguments(target)
    for name in node:
        if str(name).startswith("_") or name in skip:
            continue
        if name not in accepted:
            if takes_any:
                continue
            where = f"{target.__module__}.{target.__qualname__}"
            raise UserError(f"{key}.{name}: not an argument of {where}; accepted: {', '.join(accepted)}")
        try:
            value = node[name]
        except MissingMandatoryValue:
            raise UserError(f"{key}.{name} is required: give it on the command line, {key}.{name}=...") from None
        hint = accepted[name]
        if _matches(value, hint) is False:
            raise UserError(f"{key}.{name}: expected {_describe(hint)}, got {value!r} ({type(value).__name__})")
        if _non_finite(value, name in INFINITY_ALLOWED) is not None:
            numbers = "finite numbers" if isinstance(value, ListConfig) else "a finite number"
            raise UserError(f"{key}.{name}: expected {numbers}, got {value!r}")
        out_of_range = _out_of_range(str(name), value)
        if out_of_range is not None:
            raise UserError(f"{key}.{name}: expected {out_of_range}, got {value!r}")


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


def _config_nodes(node: Any, top: str | None) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """Every mapping in a plain config, with the top-level key it lies under (``top``: given, or its own key)."""
    if isinstance(node, dict):
        yield top, node
        for key, value in node.items():
            yield from _config_nodes(value, top if top is not None else str(key))
    elif isinstance(node, list):
        for value in node:
            yield from _config_nodes(value, top)


@functools.cache
def config_targets(config_dir: Path = CONFIG_DIR) -> dict[str, dict[str, frozenset[str]]]:
    """The ``_target_``s that the configs in ``config_dir`` name, by the top-level key of the run config they go to
    (``model``, ``data``, ``optimizer``, ...), each with the other Hydra keys (``_partial_``) given with it."""
    targets: dict[str, dict[str, set[str]]] = {}
    for path in sorted(config_dir.rglob("*.yaml")):
        text = path.read_text()
        header = itertools.takewhile(lambda line: line.startswith("#"), text.splitlines())
        package = next((m.group(1) for line in header if (m := PACKAGE_HEADER.match(line))), None)
        group = path.parent.relative_to(config_dir).as_posix()
        package = group if package in (None, "_group_") else package
        top = package.replace("/", ".").split(".")[0] if package not in ("", ".", "_global_") else None
        content = yaml.safe_load(text)
        for key, node in _config_nodes(content, top):
            if key is not None and isinstance(node.get("_target_"), str):
                keys = targets.setdefault(key, {}).setdefault(node["_target_"], set())
                keys.update(name for name in node if HYDRA_KEY.fullmatch(str(name)) and name != "_target_")
    return {key: {target: frozenset(keys) for target, keys in named.items()} for key, named in targets.items()}


# The parts of a stored run config that eval, predict, export, load_model and sample.py build objects from
# (training.tasks.build and build_net, training.inference.load_model); the others (callbacks, logger, trainer, paths)
# are a record of the run that nothing instantiates from a checkpoint.
REBUILT = frozenset({"data", "model", "module", "optimizer", "scheduler", "regularizer", "finetune"})


def check_stored_config(config: Any, origin: str) -> None:
    """Raise ``UserError`` unless ``config``, a run config read from the file ``origin``, holds only plain values
    (no ``${...}`` interpolation) and, in the parts that are rebuilt from it (``REBUILT``), the ``_target_``s that
    the project's configs name at the same top-level key, with the Hydra keys they give there; at any depth, in
    lists and ``_args_`` too. Elsewhere a ``_target_`` is a record (a run's own callback, say) and may name any
    class: nothing is built from it."""
    allowed = config_targets()

    def refuse(what: str, where: str) -> UserError:
        return UserError(
            f"{origin}: its stored run config {what} at {where or 'its top'}; a checkpoint may rebuild only the "
            "project's own classes (the _target_s of configs/) from plain values: refusing it, nothing was built"
        )

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            top = where.split(".")[0]
            if "_target_" in node and (top in REBUILT or not isinstance(node["_target_"], str)):
                target = node["_target_"]
                if not isinstance(target, str) or target not in allowed.get(top, {}):
                    raise refuse(f"names _target_ {target!r}", where)
                extra = [key for key in node if HYDRA_KEY.fullmatch(str(key)) and key != "_target_"]
                unexpected = [key for key in extra if key not in allowed[top][target]]
                if unexpected:
                    raise refuse(f"gives {unexpected[0]} to {target}", where)
            for key, value in node.items():
                if not isinstance(key, str):
                    raise refuse(f"has a key that is not a name ({type(key).__name__})", where)
                walk(value, f"{where}.{key}" if where else key)
        elif isinstance(node, list | tuple):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")
        elif isinstance(node, str):
            if "${" in node:
                raise refuse("holds an interpolation (${...})", where)
        elif node is not None and not isinstance(node, bool | int | float):
            raise refuse(f"holds a {type(node).__name__}, not a plain value,", where)

    walk(config, "")


def _installed(package: str) -> bool:
    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def require_extra(extra: str, packages: Sequence[str], what: str) -> None:
    """Raise ``UserError`` naming the ``pip install`` of the project's optional ``extra`` (pyproject.toml) when one of
    ``packages`` (distribution names, as pip names them), which ``what`` needs, is not installed."""
    missing = [package for package in packages if not _installed(package)]
    if missing:
        raise UserError(
            f"{what} needs {', '.join(missing)}, not installed here; install the '{extra}' extra: "
            f"pip install -c constraints.txt -e '.[{extra}]'"
        )


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
