"""One table of every trial of a sweep, best first.

    python scripts/sweep_report.py <multirun dir> [metric=<name>] [mode=max|min]

Works on the basic sweeper's grids (``-m optimizer.lr=0.1,0.01``) and on Optuna searches (``hparams_search=...``):
each row is a job with its overrides, the metrics of its metrics.json and its wall time. The trials are sorted by
``metric`` (default: the sweep's ``optimized_metric``, else ``val/acc_best`` or ``val/loss_best``, whichever the
trials have; job order when none), best first: ``mode=max`` or
``min`` (default: the Optuna sweeper's direction for its own metric, else ``min`` for a loss or an error and ``max``
for the rest); non-finite values (NaN, infinite; null or "nan", "inf", "-inf" in a metrics.json) sort last. The
table is printed and written to ``sweep_report.md`` and ``sweep_report.csv`` in the directory. A file that cannot be
read (a truncated metrics.json, a damaged ``.hydra/`` record) is named on a line of its own, and the report, of the
others, ends in one ``error:`` line with exit status 2.
"""

from __future__ import annotations

import sys

from training.checkpoint_io import write_record
from training.cli import run_plain
from training.config import UserError
from training.sweeps import read_sweep, sort_direction, sweep_table

USAGE = "usage: python scripts/sweep_report.py <multirun dir> [metric=<name>] [mode=max|min]"
MODES = {"max": "maximize", "min": "minimize"}
# the metric a sweep is sorted by when neither metric= nor its optimized_metric names one: the best validation
# accuracy that every classifier's run records, or a language model's best validation loss
FALLBACK_METRICS = ("val/acc_best", "val/loss_best")


def main(args: list[str]) -> None:
    directories = [arg for arg in args if "=" not in arg]
    options = dict(arg.split("=", 1) for arg in args if "=" in arg)
    unknown = set(options) - {"metric", "mode"}
    if len(directories) != 1 or unknown:
        raise UserError(f"{'unknown option ' + ', '.join(sorted(unknown)) + '; ' if unknown else ''}{USAGE}")
    if options.get("mode", "max") not in MODES:
        raise UserError(f"mode: expected max or min, got {options['mode']!r}")
    sweep = read_sweep(directories[0])
    available = {name for trial in sweep.trials for name in trial.metrics}
    fallback = next((name for name in FALLBACK_METRICS if name in available), None)
    metric = options.get("metric") or sweep.optimized_metric or fallback
    direction = MODES[options["mode"]] if "mode" in options else None
    if metric is not None:
        if metric not in available:
            raise UserError(f"metric: no trial has {metric!r}; available: {', '.join(sorted(available)) or 'none'}")
        direction = direction or sort_direction(sweep, metric)
    markdown, table_csv = sweep_table(sweep, metric, direction)
    finished = sum(1 for trial in sweep.trials if trial.metrics)
    order = f"best first by {metric} ({direction})" if metric else "in job order (no metric: give metric=<name>)"
    print(f"{sweep.directory}: {len(sweep.trials)} trials ({finished} with metrics), {sweep.sweeper}, {order}")
    if sweep.optuna_best:
        print(f"Optuna's best: {sweep.optuna_best.get('best_value')} with {sweep.optuna_best.get('best_params')}")
    print()
    print(markdown, end="")
    write_record(sweep.directory / "sweep_report.md", markdown, "the table is printed above")
    write_record(sweep.directory / "sweep_report.csv", table_csv, "the table is printed above")
    print(f"\nwritten: {sweep.directory / 'sweep_report.md'}, {sweep.directory / 'sweep_report.csv'}")
    if sweep.unreadable:
        print("\n".join(sweep.unreadable), file=sys.stderr)
        raise UserError(f"{len(sweep.unreadable)} of the sweep's files could not be read (each is named above)")


if __name__ == "__main__":
    run_plain(main)
