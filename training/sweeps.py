"""Hyperparameter sweeps: the value a run returns to Hydra's sweeper, and the table of a multirun's trials.

A multirun directory (``logs/<task_name>/multiruns/<timestamp>``, of the basic sweeper's grid or of the Optuna
sweeper's ``hparams_search``) holds one directory per job with Hydra's record of the job in ``.hydra/``
(``overrides.yaml``, ``config.yaml``, ``hydra.yaml``) and the run's ``metrics.json``; Optuna adds
``optimization_results.yaml`` at the top. ``read_sweep`` gathers them, ``sweep_table`` sorts them best first.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from omegaconf import OmegaConf

from training.config import UserError

NON_FINITE = ("nan", "inf", "-inf")  # how metrics.json holds a NaN or infinite metric


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def metric_value(metrics: Mapping[str, Any], name: str) -> float:
    """The value of the metric ``name`` among a run's ``metrics`` (its metrics.json), for the sweeper to optimise."""
    value = metrics.get(name)
    if not _is_number(value):
        available = [key for key, value in metrics.items() if _is_number(value)]
        raise UserError(
            f"optimized_metric: the run has no metric {name!r}; available: {', '.join(available) or 'none'}"
        )
    return float(value)


# Lightning strategies whose launcher starts the other processes by running the command line again
RELAUNCHING_STRATEGIES = ("ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false")


def check_multirun_strategy(trainer: Mapping[str, Any], launcher: str) -> None:
    """Raise ``UserError`` for a ``trainer`` config that cannot run in a multirun of ``launcher`` (its ``_target_``):
    Lightning's ``ddp`` starts the other processes of a job by running the command again, and in a multirun that
    command is the whole sweep."""
    strategy = trainer.get("strategy")
    if strategy not in RELAUNCHING_STRATEGIES or (trainer.get("devices") == 1 and trainer.get("num_nodes", 1) == 1):
        return
    if not launcher.endswith("BasicLauncher") or SLURMEnvironment.detect() or TorchElasticEnvironment.detect():
        return  # SLURM's tasks or torchrun's processes: nothing is started again
    raise UserError(
        f"trainer.strategy={strategy} starts its other processes by running this command again, which in a "
        "multirun starts the whole sweep again; use trainer.strategy=ddp_spawn here, or hydra/launcher=slurm "
        "(docs/scaling.md)"
    )


@dataclass
class Trial:
    """One job of a multirun: its number, directory, command-line overrides, metrics and wall time in seconds."""

    number: int
    directory: Path
    overrides: dict[str, str]
    metrics: dict[str, float]
    seconds: float | None


@dataclass
class Sweep:
    """A multirun's trials (in job order) and what its jobs were asked to optimise."""

    directory: Path
    trials: list[Trial]
    sweeper: str
    optimized_metric: str | None
    direction: str | None
    optuna_best: dict[str, Any] | None


def _read_trial(hydra_dir: Path) -> tuple[Trial, Any, Any]:
    job_dir = hydra_dir.parent
    overrides = dict(str(item).partition("=")[::2] for item in OmegaConf.load(hydra_dir / "overrides.yaml"))
    hydra_cfg = OmegaConf.load(hydra_dir / "hydra.yaml").hydra
    config = OmegaConf.load(hydra_dir / "config.yaml")
    metrics_path = job_dir / "metrics.json"
    metrics: dict[str, float] = {}
    seconds = None
    if metrics_path.exists():
        written = json.loads(metrics_path.read_text())
        metrics = {key: float(value) for key, value in written.items() if _is_number(value) or value in NON_FINITE}
        # Hydra writes .hydra/ as the job starts; the run writes metrics.json as it ends
        seconds = metrics_path.stat().st_mtime - (hydra_dir / "overrides.yaml").stat().st_mtime
    trial = Trial(int(hydra_cfg.job.num), job_dir, overrides, metrics, seconds)
    return trial, hydra_cfg, config


def read_sweep(directory: str | Path) -> Sweep:
    """The trials of the multirun in ``directory``, in job order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory} is not a directory")
    read = [_read_trial(path.parent) for path in sorted(directory.rglob(".hydra/overrides.yaml"))]
    if not read:
        raise UserError(f"{directory} holds no Hydra jobs (no */.hydra/overrides.yaml): is it a multirun directory?")
    read.sort(key=lambda item: item[0].number)
    trials = [trial for trial, _, _ in read]
    _, hydra_cfg, config = read[0]
    sweeper = str(hydra_cfg.sweeper.get("_target_", "")).rsplit(".", 1)[-1] or "BasicSweeper"
    direction = hydra_cfg.sweeper.get("direction") if "direction" in hydra_cfg.sweeper else None
    results = directory / "optimization_results.yaml"
    optuna_best = OmegaConf.to_container(OmegaConf.load(results)) if results.exists() else None
    return Sweep(directory, trials, sweeper, config.get("optimized_metric"), direction, optuna_best)


def sort_direction(sweep: Sweep, metric: str) -> str:
    """``maximize`` or ``minimize``: the sweeper's direction for its own metric, else by the name (a loss or an
    error is minimised, anything else maximised)."""
    if metric == sweep.optimized_metric and sweep.direction in ("maximize", "minimize"):
        return str(sweep.direction)
    return "minimize" if any(word in metric.rsplit("/", 1)[-1] for word in ("loss", "err")) else "maximize"


def best_first(trials: list[Trial], metric: str, direction: str) -> list[Trial]:
    """``trials`` sorted by ``metric``, the best first; trials without it (failed or still running) last."""
    sign = -1.0 if direction == "maximize" else 1.0

    def key(trial: Trial) -> tuple[bool, float, int]:
        value = trial.metrics.get(metric)
        missing = value is None or math.isnan(value)
        return missing, 0.0 if missing else sign * value, trial.number

    return sorted(trials, key=key)


def _metric_names(trials: list[Trial], first: str | None) -> list[str]:
    names = dict.fromkeys([first] if first else [])
    for trial in trials:
        names.update(dict.fromkeys(trial.metrics))
    return list(names)


def sweep_table(sweep: Sweep, metric: str | None = None, direction: str | None = None) -> tuple[str, str]:
    """The trials as a markdown table (best first by ``metric``; job order when there is none) and as CSV.

    The markdown table has a column for each override that differs between the trials (those all share are
    listed above it); the CSV has every override, every metric, the wall time and the job directory.
    """
    trials = sweep.trials
    if metric is not None:
        trials = best_first(trials, metric, direction or sort_direction(sweep, metric))
    keys = list(dict.fromkeys(key for trial in sweep.trials for key in trial.overrides))
    varying = [key for key in keys if len({trial.overrides.get(key) for trial in sweep.trials}) > 1]
    shared = [f"{key}={sweep.trials[0].overrides[key]}" for key in keys if key not in varying]
    metrics = _metric_names(sweep.trials, metric)

    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:.4g}"

    def setting(value: str) -> str:  # a sampled 0.012142404210404066 as 0.01214
        try:
            return value if value.lstrip("-").isdigit() else f"{float(value):.4g}"
        except ValueError:
            return value

    lines = []
    if shared:
        lines += [f"every trial: {' '.join(shared)}", ""]
    header = ["job", *varying, *metrics, "wall s"]
    lines += [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    for trial in trials:
        row = [str(trial.number), *(setting(trial.overrides.get(key, "")) for key in varying)]
        row += [cell(trial.metrics.get(name)) for name in metrics]
        row.append("" if trial.seconds is None else f"{trial.seconds:.1f}")
        lines.append(f"| {' | '.join(row)} |")
    markdown = "\n".join(lines) + "\n"

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["job", *keys, *metrics, "wall_seconds", "directory"])
    for trial in trials:
        writer.writerow(
            [
                trial.number,
                *(trial.overrides.get(key, "") for key in keys),
                *(trial.metrics.get(name, "") for name in metrics),
                "" if trial.seconds is None else round(trial.seconds, 3),
                str(trial.directory),
            ]
        )
    return markdown, buffer.getvalue()
