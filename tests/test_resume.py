"""Resuming a run (``ckpt_path=<file>|last``): it goes on exactly where the earlier run stopped, in a new directory."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from test_safety import REFUSAL, WRITERS

from conftest import compose_config, run_script
from training.checkpointing import ModelCheckpoint
from training.config import UserError
from training.resume import random_states, resume_path, set_random_states
from training.tasks import load_checkpoint, train

FAST = ["trainer.accelerator=cpu", "callbacks.progress_bar=null", "callbacks.model_summary=null", "logger=csv"]
# a schedule that changes the learning rate every epoch, momentum (SGD's default config), augmentation (digits'
# default) and an EMA of the weights: every piece of state a resumed run must take over
STATE = ["scheduler.step_size=1", "scheduler.gamma=0.5", "ema=enabled", "+trainer.limit_train_batches=10"]
# the digits' two ways to the model: whole batches from the tensors (the default), or a DataLoader over images
DATA_PATHS = {"fast_path": [], "per_image": ["data.fast_path=false", "data.num_workers=0"]}
EPOCHS = 3


def train_run(log_dir: Path, name: str, *overrides: str) -> dict:
    cfg = compose_config("train", log_dir / "train" / "runs" / name, [*FAST, f"paths.log_dir={log_dir}", *overrides])
    return train(cfg)


def file_digests(directory: Path) -> dict[str, tuple[str, int]]:
    return {
        str(path.relative_to(directory)): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module", params=list(DATA_PATHS))
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three epochs in one go; one epoch, then resumed from its last.ckpt (``ckpt_path=last``) to the third."""
    log_dir = tmp_path_factory.mktemp("logs")
    state = [*STATE, *DATA_PATHS[request.param]]
    uninterrupted = train_run(log_dir, "uninterrupted", *state, f"trainer.max_epochs={EPOCHS}")
    first = train_run(log_dir, "first", *state, "trainer.max_epochs=1")
    before = file_digests(Path(first["output_dir"]))
    resumed = train_run(log_dir, "resumed", *state, f"trainer.max_epochs={EPOCHS}", "ckpt_path=last")
    return {
        "uninterrupted": uninterrupted,
        "first": first,
        "resumed": resumed,
        "first_files": (before, file_digests(Path(first["output_dir"]))),
        "log_dir": log_dir,
    }


def test_a_resumed_run_ends_with_the_weights_and_metrics_of_an_uninterrupted_one(runs: dict) -> None:
    uninterrupted, resumed = runs["uninterrupted"], runs["resumed"]
    assert resumed["resumed_from"] == runs["first"]["last_checkpoint"]
    expected, got = (load_checkpoint(run["last_checkpoint"]) for run in (uninterrupted, resumed))
    assert (got["epoch"], got["global_step"]) == (expected["epoch"], expected["global_step"]) != (0, 0)
    for key in ("state_dict", "current_model_state"):  # the EMA average (tested) and the live weights
        assert got[key].keys() == expected[key].keys()
        assert all(torch.equal(got[key][name], expected[key][name]) for name in expected[key]), key
    [got_optimizer], [expected_optimizer] = got["optimizer_states"], expected["optimizer_states"]
    assert got_optimizer["param_groups"] == expected_optimizer["param_groups"]  # the scheduled learning rate
    assert all(
        torch.equal(got_optimizer["state"][index]["momentum_buffer"], state["momentum_buffer"])
        for index, state in expected_optimizer["state"].items()
    )
    metrics = [key for key in uninterrupted if key.startswith(("test/", "val/"))]
    assert "test/acc" in metrics and "val/acc_best" in metrics
    assert {key: resumed[key] for key in metrics} == {key: uninterrupted[key] for key in metrics}
    # the best checkpoint is the best of the whole training, the earlier run's if no later epoch beat it
    assert Path(resumed["best_checkpoint"]).name == Path(uninterrupted["best_checkpoint"]).name


def test_a_resumed_run_writes_into_its_own_directory_and_leaves_the_earlier_run_as_it_was(runs: dict) -> None:
    first_dir, resumed_dir = Path(runs["first"]["output_dir"]), Path(runs["resumed"]["output_dir"])
    assert resumed_dir != first_dir
    assert Path(runs["resumed"]["last_checkpoint"]) == resumed_dir / "checkpoints" / "last.ckpt"
    assert "ckpt_path: last" in (resumed_dir / "config.yaml").read_text()
    before, after = runs["first_files"]
    assert before == after


def test_random_states_survive_a_weights_only_load_and_restore_every_generator(tmp_path: Path) -> None:
    torch.save({"states": random_states()}, tmp_path / "states.pt")
    draws = torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)]
    set_random_states(torch.load(tmp_path / "states.pt", weights_only=True)["states"])
    again = torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)]
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]


def test_the_top_k_of_the_earlier_run_carry_over_but_last_ckpt_is_the_new_runs(tmp_path: Path) -> None:
    earlier = ModelCheckpoint(dirpath=str(tmp_path / "old"), monitor="val/loss", save_last=True)
    earlier.best_model_path, earlier.best_model_score = str(tmp_path / "old" / "best.ckpt"), torch.tensor(0.5)
    earlier.best_k_models = {earlier.best_model_path: earlier.best_model_score}
    earlier.last_model_path = str(tmp_path / "old" / "last.ckpt")
    resumed = ModelCheckpoint(dirpath=str(tmp_path / "new"), monitor="val/loss", save_last=True)
    resumed.load_state_dict(earlier.state_dict())
    assert resumed.best_model_path == earlier.best_model_path and resumed.best_model_score == 0.5
    assert resumed.best_k_models == earlier.best_k_models
    assert resumed.last_model_path == ""


@pytest.fixture
def resume_config(tmp_path: Path):
    def make(*overrides: str):
        return compose_config("train", tmp_path / "logs" / "train" / "runs" / "new", [*FAST, *overrides])

    return make


def test_last_without_an_earlier_run_is_one_clear_line(resume_config, tmp_path: Path) -> None:
    runs_dir = tmp_path / "logs" / "train" / "runs"
    with pytest.raises(UserError, match=f"^ckpt_path=last: no earlier run with a last checkpoint under {runs_dir}$"):
        train(resume_config(f"paths.log_dir={tmp_path / 'logs'}", "ckpt_path=last"))


def test_a_checkpoint_of_another_configuration_is_refused(runs: dict, resume_config) -> None:
    last = runs["first"]["last_checkpoint"]
    with pytest.raises(UserError, match=re.escape(f"ckpt_path: {last} was trained with model.name='lenet5', this run")):
        train(resume_config(*STATE, "model=lenet5_paper", f"ckpt_path={last}"))
    with pytest.raises(UserError, match=r"trained with optimizer.lr=0.05, this run has optimizer.lr=0.1; .*pretrained"):
        train(resume_config(*STATE, "optimizer.lr=0.1", f"ckpt_path={last}"))
    with pytest.raises(UserError, match=r"callbacks.ema=\{.*\}, this run has callbacks.ema=None"):
        train(resume_config(f"ckpt_path={last}", "scheduler.step_size=1", "scheduler.gamma=0.5"))


def test_a_checkpoint_without_training_state_is_refused(runs: dict, resume_config, tmp_path: Path) -> None:
    checkpoint = load_checkpoint(runs["first"]["last_checkpoint"])
    weights_only = {key: value for key, value in checkpoint.items() if key not in ("optimizer_states", "loops")}
    torch.save(weights_only, tmp_path / "weights.ckpt")
    with pytest.raises(UserError, match="holds weights but no training state to resume"):
        train(resume_config(*STATE, f"ckpt_path={tmp_path / 'weights.ckpt'}"))


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_file_that_holds_code_is_refused_and_its_code_never_runs(resume_config, tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "marker"
    path = WRITERS[writer](tmp_path / "evil.ckpt", marker)  # a torch.save file, or a plain pickle
    with pytest.raises(UserError, match=re.escape(f"{path} {REFUSAL}")):
        train(resume_config(f"ckpt_path={path}"))
    assert not marker.exists()


def test_the_script_says_why_it_cannot_resume_in_one_line(tmp_path: Path) -> None:
    result = run_script("train.py", "ckpt_path=last", "trainer.accelerator=cpu", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line == f"error: ckpt_path=last: no earlier run with a last checkpoint under {Path('logs/train/runs')}"
    assert "Traceback" not in result.stderr


def _newer_run(runs_dir: Path, name: str, like: Path, **changes: Any) -> Path:
    """A run directory ``name`` newer than every other, copied from the run that wrote ``like`` (its last.ckpt),
    its config.yaml with ``changes`` (dotted keys), as a run of other settings leaves it."""
    run = runs_dir / name
    (run / "checkpoints").mkdir(parents=True)
    config = yaml.safe_load((like.parents[1] / "config.yaml").read_text())
    for key, value in changes.items():
        *parents, last = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        node[last] = value
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    shutil.copy(like, run / "checkpoints" / "last.ckpt")
    newest = max(path.stat().st_mtime_ns for path in runs_dir.glob("*/checkpoints/last.ckpt")) + 10**9
    os.utime(run / "checkpoints" / "last.ckpt", ns=(newest, newest))
    return run


def test_last_takes_the_newest_run_that_trained_the_same_settings_and_says_which(
    runs: dict, resume_config, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    log_dir = tmp_path / "logs"
    shutil.copytree(runs["log_dir"], log_dir)
    runs_dir = log_dir / "train" / "runs"
    newest_same = max(runs_dir.glob("*/checkpoints/last.ckpt"), key=lambda path: path.stat().st_mtime_ns)
    _newer_run(runs_dir, "finetuned", newest_same, **{"model.num_classes": 5})  # a fine-tuning run, newer
    cfg = resume_config(*STATE, *DATA_PATHS["fast_path"], f"paths.log_dir={log_dir}", "ckpt_path=last")
    assert resume_path(cfg) == newest_same
    assert capsys.readouterr().out == (
        f"ckpt_path=last: resuming {newest_same}, the newest run of 'train' that trained the same model, data and "
        "training settings\n"
    )


def test_last_without_a_run_of_the_same_settings_names_the_newest_and_what_differs(
    runs: dict, resume_config, tmp_path: Path
) -> None:
    log_dir = tmp_path / "logs"
    runs_dir = log_dir / "train" / "runs"
    runs_dir.mkdir(parents=True)
    _newer_run(runs_dir, "finetuned", Path(runs["first"]["last_checkpoint"]), **{"model.num_classes": 5})
    cfg = resume_config(*STATE, f"paths.log_dir={log_dir}", "ckpt_path=last")
    with pytest.raises(UserError) as error:
        resume_path(cfg)
    assert str(error.value) == (
        f"ckpt_path=last: none of the 1 runs with a last checkpoint under {runs_dir} trained what this run trains; "
        "the newest, finetuned, has model.num_classes=5 where this run has 10. Give ckpt_path=<its checkpoint> "
        "with its settings, or the settings of the run to resume"
    )
