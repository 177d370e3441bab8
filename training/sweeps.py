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
    """A multirun's trials (in job order), what its jobs were asked to optimise, and a line for each of its files
    that could not be read (naming it and why)."""

    directory: Path
    trials: list[Trial]
    sweeper: str
    optimized_metric: str | None
    direction: str | None
    optuna_best: dict[str, Any] | None
    unreadable: list[str]


NON_FINITE = ("nan", "inf", "-inf")  # a non-finite metric in a metrics.json: str() of the float, which float() reads


def _why(err: Exception) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"truncated or damaged, not JSON ({err})"
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _read_metrics(path: Path) -> dict[str, float | None]:
    """The numbers of a metrics.json, non-finite ones (``NaN``, ``"nan"``, ``"inf"``, ``"-inf"``) included;
    ``None`` for a null, which is a non-finite metric where other trials have a number (else a path not set)."""
    written = json.loads(path.read_text())
    if not isinstance(written, dict):
        raise ValueError(f"not a JSON object of metrics but a {type(written).__name__}")
    values: dict[str, float | None] = {}
    for key, value in written.items():
        if _is_number(value) or value in NON_FINITE:
            values[key] = float(value)
        elif value is None:
            values[key] = None
    return values


def _read_trial(hydra_dir: Path, unreadable: list[str]) -> tuple[Trial, Any, Any, dict[str, float | None]]:
    """A job's trial (without its metrics), Hydra's config and the job's config, and its metrics.json's values;
    a metrics.json that cannot be read is named in ``unreadable``, and the trial has no metrics."""
    job_dir = hydra_dir.parent
    overrides = dict(str(item).partition("=")[::2] for item in OmegaConf.load(hydra_dir / "overrides.yaml"))
    hydra_cfg = OmegaConf.load(hydra_dir / "hydra.yaml").hydra
    config = OmegaConf.load(hydra_dir / "config.yaml")
    trial = Trial(int(hydra_cfg.job.num), job_dir, overrides, {}, None)
    metrics_path = job_dir / "metrics.json"
    if not metrics_path.exists():
        return trial, hydra_cfg, config, {}
    try:
        values = _read_metrics(metrics_path)
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        unreadable.append(f"{metrics_path}: {_why(err)}")
        return trial, hydra_cfg, config, {}
    # Hydra writes .hydra/ as the job starts; the run writes metrics.json as it ends
    trial.seconds = metrics_path.stat().st_mtime - (hydra_dir / "overrides.yaml").stat().st_mtime
    return trial, hydra_cfg, config, values


def read_sweep(directory: str | Path) -> Sweep:
    """The trials of the multirun in ``directory``, in job order. A job whose files cannot be read is named in
    ``unreadable``: left out for a damaged ``.hydra/`` record, without metrics for a damaged metrics.json."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory} is not a directory")
    jobs = sorted(directory.rglob(".hydra/overrides.yaml"))
    if not jobs:
        raise UserError(f"{directory} holds no Hydra jobs (no */.hydra/overrides.yaml): is it a multirun directory?")
    read, unreadable = [], []
    for path in jobs:
        try:
            read.append(_read_trial(path.parent, unreadable))
        except Exception as err:  # whatever OmegaConf and YAML raise for a damaged record of Hydra's
            unreadable.append(f"{path.parent}: Hydra's record of the job is damaged ({_why(err)})")
    if not read:
        raise UserError(f"{directory}: no job could be read: {'; '.join(unreadable)}")
    read.sort(key=lambda item: item[0].number)
    metric_names = {name for *_, values in read for name, value in values.items() if value is not None}
    for trial, _, _, values in read:
        trial.metrics = {
            name: math.nan if value is None else value for name, value in values.items() if name in metric_names
        }
    trials = [trial for trial, *_ in read]
    _, hydra_cfg, config, _ = read[0]
    sweeper = str(hydra_cfg.sweeper.get("_target_", "")).rsplit(".", 1)[-1] or "BasicSweeper"
    direction = hydra_cfg.sweeper.get("direction") if "direction" in hydra_cfg.sweeper else None
    results = directory / "optimization_results.yaml"
    optuna_best = OmegaConf.to_container(OmegaConf.load(results)) if results.exists() else None
    return Sweep(directory, trials, sweeper, config.get("optimized_metric"), direction, optuna_best, unreadable)


def sort_direction(sweep: Sweep, metric: str) -> str:
    """``maximize`` or ``minimize``: the sweeper's direction for its own metric, else by the name (a loss or an
    error is minimised, anything else maximised)."""
    if metric == sweep.optimized_metric and sweep.direction in ("maximize", "minimize"):
        return str(sweep.direction)
    return "minimize" if any(word in metric.rsplit("/", 1)[-1] for word in ("loss", "err")) else "maximize"


def best_first(trials: list[Trial], metric: str, direction: str) -> list[Trial]:
    """``trials`` sorted by ``metric``, the best first; trials without it (failed or still running) or with a
    non-finite value (NaN, infinite) last."""
    sign = -1.0 if direction == "maximize" else 1.0

    def key(trial: Trial) -> tuple[bool, float, int]:
        value = trial.metrics.get(metric)
        missing = value is None or not math.isfinite(value)
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
