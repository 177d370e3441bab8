"""The README's promise: the default command trains LeNet-5 to 97% on the bundled digits, and eval agrees."""

import json
import re
from pathlib import Path

import pytest

from conftest import ROOT, run_script
from test_train import read_events


@pytest.mark.slow
def test_default_training_reaches_97_percent_and_eval_reproduces_it(tmp_path: Path) -> None:
    result = run_script("train.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    [run_dir] = (tmp_path / "logs" / "train" / "runs").iterdir()
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["test/acc"] >= 0.97
    # the end of the output says where the checkpoint and the TensorBoard logs are
    assert summary["best_checkpoint"] in result.stdout
    assert f"tensorboard --logdir {summary['tensorboard_dir']}" in result.stdout
    assert re.search(r"test/acc\s+0\.9[7-9]\d\d", result.stdout)
    # piped, the output is short: no tips, the network's own summary, one table of test metrics (ours, at the end)
    output = result.stdout + result.stderr
    assert len(output.splitlines()) <= 30, output
    assert "Tip" not in output and "Total FLOPs" not in output and "already configured" not in output
    assert output.count("test/acc ") == 1
    assert "model: LeNet5, 61,706 parameters, 416.52 K multiply-adds per 1x32x32 input" in result.stdout

    scalars = set(read_events(summary["tensorboard_dir"]).Tags()["scalars"])
    assert {"train/loss_epoch", "train/acc_epoch", "val/loss", "val/acc", "lr-SGD"} <= scalars

    evaluation = run_script("eval.py", f"ckpt_path={summary['best_checkpoint']}", "hydra.run.dir=eval", cwd=tmp_path)
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["test/acc"] == pytest.approx(summary["test/acc"], abs=1e-6)


def test_ci_installs_and_tests_exactly_as_the_readme_says() -> None:
    readme_lines = (ROOT / "README.md").read_text().splitlines()
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command.endswith("&& pytest")
    assert ci_command in readme_lines
