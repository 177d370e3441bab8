"""scripts/gpu_check.sh on a machine without a GPU: its arguments and its refusal end in one line, and it writes
nothing. (On a GPU machine it runs the whole check: docs/benchmarks.md, "GPU".)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def run_check(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_an_unknown_argument_is_one_line_naming_the_accepted_ones(tmp_path: Path) -> None:
    result = run_check("reprot=x.md", cwd=tmp_path)
    assert result.returncode == 2
    accepted = "prepare, report=<file.md>, work=<dir>, only=<steps>"
    assert result.stderr == f"error: unknown argument 'reprot=x.md'; accepted: {accepted}\n"


def test_only_names_its_steps(tmp_path: Path) -> None:
    result = run_check("only=speed_resnet20,speed_resnet", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown step 'speed_resnet' in only=; accepted: pytest, default_run, ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a CUDA device")
def test_without_a_gpu_it_stops_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    result = run_check(f"work={tmp_path / 'work'}", f"report={tmp_path / 'report.md'}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "error: torch sees no CUDA device here; the GPU check needs one\n"
    assert list(tmp_path.iterdir()) == []
