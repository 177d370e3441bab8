"""Sweeps, DDP, the SLURM launcher and the speed switches (docs/scaling.md), run as a user runs them."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from pytorch_lightning.profilers import SimpleProfiler

from conftest import ROOT, compose_config, run_script
from data import DigitsDataModule
from test_train import read_events
from training.config import instantiate
from training.speed import NoProfiler, SpeedSwitches, channels_last_input
from training.tasks import build, load_checkpoint, train

FAST = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "trainer.accelerator=cpu",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]


def sweep(tmp_path: Path, *args: str, timeout: float = 300) -> Path:
    """Run ``scripts/train.py -m`` with the fast settings into ``tmp_path/sweep``; the multirun directory."""
    directory = tmp_path / "sweep"
    result = run_script("train.py", "-m", *args, *FAST, f"hydra.sweep.dir={directory}", cwd=tmp_path, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return directory


def report(directory: Path, *options: str) -> tuple[str, list[list[str]]]:
    """``sweep_report.py``'s printed output and the rows of its markdown table."""
    result = run_script("sweep_report.py", str(directory), *options, cwd=directory)
    assert result.returncode == 0, result.stderr
    assert (directory / "sweep_report.md").read_text() in result.stdout
    rows = [line.strip("|").split(" | ") for line in result.stdout.splitlines() if line.startswith("| ")]
    return result.stdout, [[cell.strip() for cell in row] for row in rows]


def hparams_of(job_dir: Path) -> bytes:
    return read_events(str(job_dir / "tensorboard")).PluginTagToContent("hparams")["_hparams_/session_start_info"]


def test_a_grid_sweep_runs_every_point_and_the_report_lists_them(tmp_path: Path) -> None:
    directory = sweep(tmp_path, "optimizer.lr=0.1,0.01", "optimized_metric=val/acc_best", "module.label_smoothing=0.05")
    output, rows = report(directory)
    assert "2 trials (2 with metrics), BasicSweeper, best first by val/acc_best (maximize)" in output
    header, *trials = rows
    assert header[:3] == ["job", "optimizer.lr", "val/acc_best"] and header[-1] == "wall s"
    assert sorted(row[1] for row in trials) == ["0.01", "0.1"]
    values = [float(row[2]) for row in trials]
    assert values == sorted(values, reverse=True)  # best first
    assert all(row[header.index("test/acc")] and float(row[-1]) > 0 for row in trials)
    csv_lines = (directory / "sweep_report.csv").read_text().splitlines()
    assert csv_lines[0].startswith("job,optimizer.lr,") and csv_lines[0].endswith(",wall_seconds,directory")
    assert len(csv_lines) == 3
    for job in ("0", "1"):  # tensorboard --logdir <multirun dir> finds every trial, with what its command line set
        hparams = hparams_of(directory / job)
        assert b"optimizer/lr" in hparams and b"module/label_smoothing" in hparams
    _, by_loss = report(directory, "metric=test/loss")
    losses = [float(row[2]) for row in by_loss[1:]]
    assert by_loss[0][2] == "test/loss" and losses == sorted(losses)  # a loss: the lowest first


def test_an_optuna_random_search_returns_the_metric_and_the_report_lists_its_trials(tmp_path: Path) -> None:
    directory = sweep(tmp_path, "hparams_search=lenet5_digits_random", "hydra.sweeper.n_trials=2")
    results = yaml.safe_load((directory / "optimization_results.yaml").read_text())
    output, rows = report(directory)
    assert "2 trials (2 with metrics), OptunaSweeper, best first by val/acc_best (maximize)" in output
    header, *trials = rows
    assert header[:4] == ["job", "optimizer.lr", "optimizer.weight_decay", "val/acc_best"]
    assert len(trials) == 2 and all(row[header.index("test/acc")] for row in trials)
    best_job = directory / trials[0][0]
    # what each trial returned to the sweeper is the val/acc_best of its metrics.json
    assert results["best_value"] == pytest.approx(float(trials[0][3]), abs=1e-4)
    written = yaml.safe_load((best_job / ".hydra" / "overrides.yaml").read_text())
    assert f"optimizer.lr={results['best_params']['optimizer.lr']}" in written
    for value in results["best_params"].values():  # sampled log-uniformly in the configured intervals
        assert 1e-6 <= value <= 0.3
    assert b"optimizer/weight_decay" in hparams_of(best_job)


def test_a_diverging_trial_is_reported_and_the_sweep_goes_on(tmp_path: Path) -> None:
    directory = sweep(tmp_path, "optimizer.lr=1e30,0.05")
    output, rows = report(directory, "metric=test/acc")
    assert "2 trials (1 with metrics)" in output
    assert [row[:2] for row in rows[1:]] == [["1", "0.05"], ["0", "1e+30"]]  # the finished one first
    assert not (directory / "0" / "metrics.json").exists()


def test_an_unknown_optimized_metric_ends_in_one_line(tmp_path: Path) -> None:
    result = run_script("train.py", "optimized_metric=val/acc_bset", "debug=fdr", *FAST[2:], cwd=tmp_path)
    assert result.returncode == 2
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith("error: optimized_metric: the run has no metric 'val/acc_bset'; available: test/loss, ")
    assert "Traceback" not in result.stderr


def test_the_report_refuses_a_directory_without_jobs(tmp_path: Path) -> None:
    result = run_script("sweep_report.py", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "holds no Hydra jobs" in result.stderr


def test_evaluation_shares_cover_the_validation_set_once_across_processes() -> None:
    """The in-memory fast path's validation loader under two processes: disjoint shares, no padding, all examples."""
    shares = []
    for rank in range(2):
        datamodule = DigitsDataModule(val_fraction=0.105)  # 189 images: the shares cannot be equal
        datamodule.setup()
        datamodule.trainer = SimpleNamespace(
            world_size=2, global_rank=rank, strategy=SimpleNamespace(root_device="cpu")
        )
        loader = datamodule.val_dataloader()
        shares.append(list(loader.sampler))
        assert sum(len(labels) for _, labels in loader) == len(shares[-1])
    assert len(shares[0]) + len(shares[1]) == 189
    assert sorted(shares[0] + shares[1]) == list(range(189))


@pytest.mark.slow
def test_ddp_inside_a_multirun_logs_the_accuracy_of_the_whole_validation_set(tmp_path: Path) -> None:
    """Two jobs of two CPU processes each; the logged val/acc is that of one process validating the same weights."""
    directory = sweep(tmp_path, "trainer=ddp_cpu", "seed=1,2", "test=false", "data.val_fraction=0.105", timeout=600)
    accuracies = []
    for job in ("0", "1"):
        logged = read_events(str(directory / job / "tensorboard")).Scalars("val/acc")[-1].value
        checkpoint = load_checkpoint(directory / job / "checkpoints" / "last.ckpt")
        datamodule, module = build(OmegaConf.create(checkpoint["hyper_parameters"]["run_config"]))
        module.load_state_dict(checkpoint["state_dict"])
        trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
        [single] = trainer.validate(module, datamodule=datamodule, verbose=False)
        assert logged == pytest.approx(single["val/acc"], abs=1e-7)
        accuracies.append(logged)
    assert accuracies[0] != accuracies[1]  # two runs, two seeds


def test_ddp_that_runs_the_command_again_is_refused_in_a_local_multirun(tmp_path: Path) -> None:
    args = ["-m", "trainer=ddp", "trainer.devices=2", "seed=1,2", *FAST, f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    result = run_script("train.py", *args, cwd=tmp_path)
    assert result.returncode == 2
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith("error: trainer.strategy=ddp starts its other processes by running this command again")
    assert "use trainer.strategy=ddp_spawn here, or hydra/launcher=slurm" in line
    assert not list((tmp_path / "sweep").rglob("*.ckpt"))


def test_the_slurm_launcher_writes_the_submission_it_is_configured_for(tmp_path: Path) -> None:
    """The real launcher, with an sbatch that records the script and refuses it: nothing is submitted."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {
        "sbatch": 'for last; do :; done\ncp "$last" "$SBATCH_RECORD"\necho "sbatch: refused by the test" >&2\nexit 1',
        "srun": "exit 1",  # submitit looks for it
    }.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(stat.S_IRWXU)
    record = tmp_path / "submission.sh"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SBATCH_RECORD": str(record)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "-m", "hydra/launcher=slurm",
         "hydra.launcher.partition=gpu", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2", "seed=1,2",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0 and "sbatch: refused by the test" in result.stderr
    flags = [line.removeprefix("#SBATCH ") for line in record.read_text().splitlines() if line.startswith("#SBATCH")]
    for flag in [
        "--partition=gpu", "--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--time=1440", "--requeue",
        "--signal=USR1@90", "--array=0-1%2", "--cpus-per-task=8", "--mem=64GB",
    ]:  # fmt: skip
        assert flag in flags
    assert "-m submitit.core._submit" in record.read_text()
    assert len(list((tmp_path / "sweep" / ".submitit").glob("*.pkl"))) == 2  # the two jobs, pickled to run there


def test_the_slurm_launcher_config_composes(tmp_path: Path) -> None:
    compose_config("train", tmp_path, ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=8"])
    launcher = HydraConfig.get().launcher  # resolved against the job's config, as the launcher reads it
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == launcher.gpus_per_node == 8
    assert launcher.additional_parameters == {"requeue": True, "signal": "USR1@90"}


def short_run(output_dir: Path, *switches: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """Four training steps (layer statistics on every other one) and two validation and test batches: the
    summary and the last checkpoint's weights."""
    overrides = [
        "trainer.max_epochs=1", "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=2",
        "+trainer.limit_test_batches=2", *FAST[2:], "callbacks.layer_stats.every_n_steps=2", *switches,
    ]  # fmt: skip
    summary = train(compose_config("train", output_dir, overrides))
    return summary, load_checkpoint(summary["last_checkpoint"])["state_dict"]


def _assert_same_run(first: tuple[dict, dict], second: tuple[dict, dict], tolerance: float) -> None:
    for key in ("test/loss", "test/acc", "val/acc_best"):
        assert first[0][key] == pytest.approx(second[0][key], abs=tolerance)
    for name, weight in first[1].items():
        torch.testing.assert_close(second[1][name], weight, atol=tolerance, rtol=0)


def test_channels_last_trains_as_the_default_layout_does(tmp_path: Path) -> None:
    _assert_same_run(short_run(tmp_path / "plain"), short_run(tmp_path / "switched", "channels_last=true"), 1e-5)


def test_the_speed_switches_act_on_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    module = SimpleNamespace(net=net)
    hooks, compiled = [], []
    register = net.register_forward_pre_hook
    monkeypatch.setattr(net, "register_forward_pre_hook", lambda hook: hooks.append(hook) or register(hook))
    monkeypatch.setattr(net, "compile", lambda: compiled.append(net))
    SpeedSwitches(channels_last=True).setup(None, module, "fit")
    SpeedSwitches(channels_last=True).setup(None, module, "test")  # once only
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert hooks == [channels_last_input]
    seen = []
    register(lambda module, args: seen.append(args[0]))
    net(torch.randn(2, 3, 8, 8))
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    for stage in ("fit", "test"):
        SpeedSwitches(compile=True).setup(None, module, stage)
    assert compiled == [net]  # compiled in place, once: the same module, the same state dict keys


def test_the_trainer_profiles_nothing_through_one_shared_context_unless_a_profiler_is_chosen(tmp_path: Path) -> None:
    profilers = {}
    for name, overrides in {"default": [], "debug": ["debug=profiler"], "simple": ["trainer.profiler=simple"]}.items():
        cfg = compose_config("train", tmp_path / name, ["trainer.accelerator=cpu", *overrides])
        profilers[name] = instantiate(cfg.trainer, "trainer").profiler
    assert isinstance(profilers["default"], NoProfiler)
    with profilers["default"].profile("[Callback]x.on_train_batch_end") as entered:
        assert entered is None
    assert profilers["default"].profile("a") is profilers["default"].profile("b")  # nothing made per hook
    assert isinstance(profilers["debug"], SimpleProfiler) and isinstance(profilers["simple"], SimpleProfiler)


@pytest.mark.slow
def test_compile_trains_as_eager_does(tmp_path: Path) -> None:
    """LeNet-5 compiled by inductor (a C compiler on the CPU): a few steps give the eager run's results."""
    _assert_same_run(short_run(tmp_path / "eager"), short_run(tmp_path / "compiled", "compile=true"), 1e-4)
