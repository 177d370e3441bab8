"""Per-layer table of a registered model at its native input size.

python scripts/summary.py model=vgg16 [input_size=3x224x224] [num_classes=1000]
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

import models
from models.summary import scaled, summarize
from training.cli import run_plain

USAGE = "usage: python scripts/summary.py model=<name> [input_size=CxHxW] [num_classes=N]"


def parse_args(args: list[str]) -> dict[str, str]:
    options = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key not in ("model", "input_size", "num_classes"):
            raise ValueError(f"unknown argument {arg!r}; {USAGE}")
        options[key] = value
    if "model" not in options:
        raise ValueError(f"model=<name> is required; {USAGE}")
    return options


def main(args: list[str]) -> None:
    options = parse_args(args)
    kwargs = {"num_classes": int(options["num_classes"])} if "num_classes" in options else {}
    model = models.create_model(options["model"], **kwargs)
    if "input_size" in options:
        input_shape = tuple(int(part) for part in options["input_size"].lower().split("x"))
        if len(input_shape) != 3:
            raise ValueError(f"input_size must be CxHxW, got {options['input_size']!r}")
    else:
        input_shape = model.native_input_size
    summary = summarize(model, input_shape)

    table = Table(title=f"{options['model']} on a {'x'.join(map(str, input_shape))} input")
    for column in ("layer", "type", "output", "parameters", "activations", "MACs"):
        table.add_column(column, justify="left" if column in ("layer", "type") else "right")
    for row in summary.rows:
        output = "x".join(map(str, row.output_shape))
        table.add_row(row.name, row.kind, output, f"{row.parameters:,}", f"{row.activations:,}", f"{row.macs:,}")
    table.add_row("total", "", "", f"{summary.parameters:,}", f"{summary.activations:,}", f"{summary.macs:,}")
    console = Console(soft_wrap=True)
    console.print(table)
    console.print(f"parameters: {summary.parameters:,}")
    console.print(f"multiply-adds: {scaled(summary.macs)} ({summary.macs:,})")
    console.print(
        f"forward activations per image: {scaled(summary.activations)} values = "
        f"{summary.activation_megabytes:.1f} MB (float32; input + conv, pooling and linear outputs)"
    )


if __name__ == "__main__":
    run_plain(main, ValueError, TypeError)
