"""``scripts/sweep_report.py`` on multirun directories written here by hand: files that cannot be read, and metrics
that are not finite. (tests/test_scaling.py runs real sweeps and reports them.)"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT
from training.cli import run_plain
from training.sweeps import read_sweep, sweep_table

SPEC = importlib.util.spec_from_file_location("sweep_report", ROOT / "scripts" / "sweep_report.py")
sweep_report = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(sweep_report)


def write_job(directory: Path, number: int, lr: float, metrics: Any, optimized: str | None = "val/acc_best") -> Path:
    """Job ``number`` of a grid over optimizer.lr, as Hydra records it, with ``metrics`` as its metrics.json (a
    dict, or the text itself)."""
    job = directory / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"optimizer.lr={lr}"]))
    hydra = {"hydra": {"job": {"num": number}, "sweeper": {"_target_": "hydra._internal.core_plugins.BasicSweeper"}}}
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"optimized_metric": optimized}))
    (job / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    return job


def report(directory: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """The script run through its own entry point: exit status, stdout and stderr."""
    monkeypatch.setattr(sys, "argv", ["scripts/sweep_report.py", str(directory)])
    try:
        run_plain(sweep_report.main)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_truncated_metrics_json_is_named_and_the_other_trials_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    write_job(tmp_path, 0, 0.1, {"val/acc_best": 0.9, "best_checkpoint": "a.ckpt"})
    damaged = write_job(tmp_path, 1, 0.01, '{"val/acc_best": 0.8, "test/a') / "metrics.json"
    write_job(tmp_path, 2, 0.001, {"val/acc_best": 0.7})
    code, out, err = report(tmp_path, monkeypatch, capsys)
    assert code == 2
    assert "3 trials (2 with metrics)" in out
    rows = [line.split(" | ")[:3] for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == [
        ["| job", "optimizer.lr", "val/acc_best"],
        ["| 0", "0.1", "0.9"],
        ["| 2", "0.001", "0.7"],
        ["| 1", "0.01", ""],
    ]
    assert (tmp_path / "sweep_report.md").read_text() in out
    assert err.splitlines() == [
        f"{damaged}: truncated or damaged, not JSON (Unterminated string starting at: line 1 column 23 (char 22))",
        "error: 1 of the sweep's files could not be read (each is named above)",
    ]


def test_a_damaged_record_of_hydras_leaves_its_job_out_and_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    write_job(tmp_path, 0, 0.1, {"val/acc_best": 0.9})
    record = write_job(tmp_path, 1, 0.01, {"val/acc_best": 0.8}) / ".hydra"
    (record / "hydra.yaml").write_text("hydra: {job: [")
    code, out, err = report(tmp_path, monkeypatch, capsys)
    assert code == 2 and "1 trials (1 with metrics)" in out
    first, last = err.splitlines()
    assert first.startswith(f"{record}: Hydra's record of the job is damaged (") and "Traceback" not in err
    assert last == "error: 1 of the sweep's files could not be read (each is named above)"


def test_non_finite_metrics_are_read_and_sorted_last(tmp_path: Path) -> None:
    values = [0.5, None, "nan", "inf", "-inf", 0.9, float("nan")]  # the last written by json.dumps as NaN
    for number, value in enumerate(values):
        write_job(tmp_path, number, 10.0**-number, {"val/acc_best": value, "best_checkpoint": None})
    sweep = read_sweep(tmp_path)
    assert not sweep.unreadable
    assert all(set(trial.metrics) == {"val/acc_best"} for trial in sweep.trials)  # a null path is no metric
    markdown, _ = sweep_table(sweep, "val/acc_best", "maximize")
    rows = [line.split(" | ")[2] for line in markdown.splitlines()[2:]]
    assert rows == ["0.9", "0.5", "nan", "nan", "inf", "-inf", "nan"]
    markdown, _ = sweep_table(sweep, "val/acc_best", "minimize")
    assert [line.split(" | ")[2] for line in markdown.splitlines()[2:]][:2] == ["0.5", "0.9"]


@pytest.mark.parametrize(("metric", "best"), [("val/acc_best", 0.9), ("val/loss_best", 0.2)])
def test_a_grid_without_an_optimized_metric_is_sorted_by_the_best_validation_metric(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, metric: str, best: float
) -> None:
    for number, value in enumerate([0.5, 0.9, 0.2]):
        write_job(tmp_path, number, 10.0**-number, {metric: value, "test/loss": 1.0}, optimized=None)
    code, out, _ = report(tmp_path, monkeypatch, capsys)
    direction = "maximize" if metric.startswith("val/acc") else "minimize"
    assert code == 0 and f"best first by {metric} ({direction})" in out
    first_row = next(line for line in out.splitlines() if line.startswith("| ") and "job" not in line)
    assert first_row.split(" | ")[2] == str(best)  # the best trial first
