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
