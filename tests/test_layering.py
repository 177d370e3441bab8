"""The packages' layering, read from the source: ``models`` stands alone and the others use its public API.

Outside ``models/``, no module imports a private module of ``models`` (``models._registry``, ...), nor reaches one as
an attribute; inside, nothing knows how the training code stores a checkpoint (the LightningModule's ``net.``
prefix, the checkpoint's ``hyper_parameters`` and ``run_config``): the training code reads those and hands over
state dicts.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

USERS = ("training", "data", "scripts", "tests")  # the packages and folders that use models
TRAINING_FORMAT = re.compile(r"(?<![\w.])net\.|hyper_parameters|run_config")


def _private_models_imports(path: Path) -> list[str]:
    """The private modules of ``models`` that the source file ``path`` imports or reaches, as ``line: name``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "models":
            names = [f"models.{alias.name}" for alias in node.names]  # from models import _registry
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "models":
            names = [f"models.{node.attr}"]
        else:
            continue
        found += [f"{node.lineno}: {name}" for name in names if name.startswith("models._")]
    return found


def test_no_module_outside_models_imports_a_private_module_of_models() -> None:
    files = [ROOT / "hubconf.py", *(path for folder in USERS for path in sorted((ROOT / folder).rglob("*.py")))]
    offenders = {str(path.relative_to(ROOT)): _private_models_imports(path) for path in files}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_models_know_nothing_of_the_training_checkpoint_format() -> None:
    mentions = {
        f"{path.relative_to(ROOT)}:{number}": line.strip()
        for path in sorted((ROOT / "models").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if TRAINING_FORMAT.search(line)
    }
    assert mentions == {}


# The libraries whose private names (a leading underscore) the project must not use: the next release may move them.
LIBRARIES = ("hydra", "omegaconf", "pytorch_lightning", "lightning_fabric", "lightning", "torch", "torchvision",
             "torchmetrics", "tensorboard", "fsspec")  # fmt: skip
PACKAGES = ("models", "training", "data", "scripts")
HYDRA_KEY = re.compile(r"_\w+_$")  # _target_, _partial_, ...: keys of a config, not names of a library


def _on_self(node: ast.Attribute) -> bool:
    return isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and not HYDRA_KEY.match(name)


def _own_names(files: list[Path]) -> set[str]:
    """The names the project defines: functions, classes, module variables, and what it stores on ``self``/``cls``."""
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _on_self(node):
                names.add(node.attr)
    return names


def _private_library_uses(path: Path, own: set[str]) -> list[str]:
    """Where the source file ``path`` imports a private module or name of ``LIBRARIES``, or uses an attribute with a
    leading underscore that the project does not define (a library's private member, inherited ones included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom | ast.Import) and getattr(node, "level", 0) == 0:
            module = getattr(node, "module", None)
            names = [module, *(f"{module}.{a.name}" for a in node.names)] if module else [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] in LIBRARIES and any(part.startswith("_") and part != "__future__" for part in parts):
                    found.append(f"{node.lineno}: import {name}")
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own:
            found.append(f"{node.lineno}: .{node.attr}")
    return found


def test_no_private_api_of_hydra_lightning_torch_or_tensorboard_is_used() -> None:
    files = [path for folder in PACKAGES for path in sorted((ROOT / folder).rglob("*.py"))]
    own = _own_names(files)
    offenders = {str(path.relative_to(ROOT)): _private_library_uses(path, own) for path in files}
    assert {path: uses for path, uses in offenders.items() if uses} == {}
