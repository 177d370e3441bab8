"""The zoo's ImageNet networks compared: accuracy against multiply-adds and parameters, time and memory per image.

python scripts/compare_zoo.py [models=<names or fnmatch patterns, comma-separated>] [batch_sizes=1,32] [repeats=3]
                              [device=cpu|cuda] [out=docs/images/zoo_comparison.png] [table=docs/zoo_comparison.md]
                              [overwrite=false]

Writes the two-panel PNG to ``out`` and the Markdown table to ``table`` (training/zoo_comparison.py says what each
figure is); an existing file is kept unless ``overwrite=true``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from training.cli import parse_key_values, run_plain
from training.config import UserError
from training.zoo_comparison import compare_zoo, select_models

DEFAULTS = {
    "models": "*", "batch_sizes": "1,32", "repeats": "3", "device": "cpu", "out": "docs/images/zoo_comparison.png",
    "table": "docs/zoo_comparison.md", "overwrite": "false",
}  # fmt: skip


def _positive(key: str, text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"{key}: expected a positive integer, got {text!r}")
    return int(text)


def parse_options(args: list[str]) -> dict[str, Any]:
    """``key=value`` arguments over ``DEFAULTS``, each checked."""
    raw = parse_key_values(args, DEFAULTS)
    options: dict[str, Any] = {"models": select_models(raw["models"]), "repeats": _positive("repeats", raw["repeats"])}
    options["batch_sizes"] = [_positive("batch_sizes", part) for part in raw["batch_sizes"].split(",")]
    if raw["device"] not in ("cpu", "cuda"):
        raise UserError(f"device: expected cpu or cuda, got {raw['device']!r}")
    if raw["device"] == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda: no CUDA device is available here")
    if raw["overwrite"] not in ("true", "false"):
        raise UserError(f"overwrite: expected true or false, got {raw['overwrite']!r}")
    for key, suffix in (("out", ".png"), ("table", ".md")):
        if Path(raw[key]).suffix != suffix or Path(raw[key]).is_dir():
            raise UserError(f"{key}: expected a file path ending in {suffix}, got {raw[key]!r}")
    options |= {"device": torch.device(raw["device"]), "overwrite": raw["overwrite"] == "true"}
    options |= {"png": Path(raw["out"]), "table": Path(raw["table"])}
    return options


def main(args: list[str]) -> None:
    options = parse_options(args)
    compare_zoo(
        options["models"], options["batch_sizes"], options["repeats"], options["device"], options["png"],
        options["table"], overwrite=options["overwrite"],
    )  # fmt: skip


if __name__ == "__main__":
    run_plain(main)
