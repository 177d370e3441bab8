"""The command-line front of the scripts: Hydra apps whose user mistakes end in one line and exit 2."""

from __future__ import annotations

import difflib
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from training.config import UserError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def _override_values(override: Any) -> list[str]:
    if not override.is_sweep_override():
        return [override.get_value_element_as_str()]
    try:
        return list(override.sweep_string_iterator())
    except Exception:  # glob() and interval sweeps: Hydra checks them itself
        return []


def check_overrides(args: Sequence[str], config_dir: Path = CONFIG_DIR) -> None:
    """Raise ``UserError`` for a config-group choice that does not exist (``model=lenett5``) or a
    ``hydra.run.dir`` that already holds a run, before Hydra writes anything."""
    try:
        overrides = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    except Exception:
        return  # not parseable: Hydra reports it
    for override in overrides:
        key = override.key_or_group
        if key == "hydra.run.dir":
            run_dir = Path(override.get_value_element_as_str())
            if (run_dir / ".hydra").exists():
                raise UserError(
                    f"hydra.run.dir={run_dir} already holds a run; nothing was changed. "
                    "Choose a new directory, or leave hydra.run.dir out for a fresh timestamped one"
                )
            continue
        group_dir = config_dir / key
        if override.is_delete() or key.startswith("hydra") or not group_dir.is_dir():
            continue
        options = sorted(path.stem for path in group_dir.glob("*.yaml"))
        for value in _override_values(override):
            if value not in options and value != "null":
                close = difflib.get_close_matches(value, options, n=3, cutoff=0.5)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                raise UserError(f"unknown {key} {value!r}; {hint}accepted: {', '.join(options)}")


def _exit_with(err: UserError) -> None:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)


def run(task: Callable[[DictConfig], Any], config_name: str) -> None:
    """Run ``task`` as the Hydra app ``configs/<config_name>.yaml`` with the command line's overrides."""
    # An upstream deprecation inside Lightning 2.6 that users can do nothing about.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    try:
        check_overrides(sys.argv[1:])
    except UserError as err:
        _exit_with(err)

    @hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")
    def app(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except UserError as err:
            _exit_with(err)

    app()
