"""The debug presets (debug=overfit, limit, profiler) and the learning-rate finder (lr_find=true)."""

from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytorch_lightning as pl
from omegaconf import OmegaConf

from conftest import compose_config
from data.digits import DigitsDataModule
from test_train import read_events
from training.tasks import load_checkpoint, train


class BatchCounter(pl.Callback):
    """Counts the training, validation (not the sanity check) and test batches of the last instance made."""

    last: ClassVar[dict[str, int]] = {}

    def __init__(self) -> None:
        self.counts = {"train": 0, "val": 0, "test": 0}
        BatchCounter.last = self.counts

    def on_train_batch_end(self, *args: Any) -> None:
        self.counts["train"] += 1

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.counts["val"] += not trainer.sanity_checking

    def on_test_batch_end(self, *args: Any) -> None:
        self.counts["test"] += 1


@pytest.mark.parametrize("preset", ["fdr", "overfit", "limit", "profiler"])
def test_every_debug_preset_composes_under_the_debug_task_name(train_config, preset: str) -> None:
    assert train_config(f"debug={preset}").task_name == "debug"


def test_overfit_drives_the_training_loss_of_two_batches_to_about_zero(train_config) -> None:
    cfg = train_config("debug=overfit")
    assert cfg.trainer.overfit_batches == 2 and cfg.data.augment == "none"
    assert "_target_" not in cfg.scheduler and not cfg.regularizer  # a constant rate, no penalty
    summary = train(cfg)
    losses = [event.value for event in read_events(summary["tensorboard_dir"]).Scalars("train/loss_epoch")]
    assert len(losses) == cfg.trainer.max_epochs
    assert losses[0] > 1.0 and losses[-1] < 0.05
    assert summary["best_checkpoint"] is None and not (Path(summary["output_dir"]) / "checkpoints").exists()


def test_limit_runs_a_few_batches_of_each_split_for_three_epochs(train_config) -> None:
    summary = train(train_config("debug=limit", "+callbacks.batch_counter._target_=test_debug.BatchCounter"))
    assert BatchCounter.last == {"train": 3 * 5, "val": 3 * 2, "test": 2}
    assert load_checkpoint(summary["last_checkpoint"] or summary["best_checkpoint"])["global_step"] == 15


def test_profiler_writes_its_report_to_the_run_directory(train_config) -> None:
    cfg = train_config("debug=profiler", "+trainer.limit_train_batches=3")
    assert cfg.trainer.max_epochs == 1
    summary = train(cfg)
    report = (Path(summary["output_dir"]) / "fit-profile.txt").read_text()
    assert "FIT Profiler Report" in report and "run_training_batch" in report


@pytest.fixture(scope="module")
def lr_find_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cfg = compose_config(
        "train",
        tmp_path_factory.mktemp("lr_find") / "run",
        ["trainer.accelerator=cpu", "callbacks.progress_bar=null", "lr_find=true", "trainer.max_epochs=3"],
    )
    return train(cfg)


def test_lr_find_plots_the_range_test_and_trains_with_its_suggestion(lr_find_run: dict) -> None:
    run_dir = Path(lr_find_run["output_dir"])
    assert (run_dir / "lr_find.png").read_bytes().startswith(b"\x89PNG")
    assert not list(run_dir.glob(".lr_find_*.ckpt"))  # Lightning's temporary checkpoint is gone
    lr = OmegaConf.load(run_dir / "config.yaml").optimizer.lr
    assert lr != 0.05 and 1e-8 < lr < 1.0
    events = read_events(lr_find_run["tensorboard_dir"])
    assert "lr_find/plot" in events.Tags()["images"]
    assert events.Scalars("lr_find/suggestion")[0].value == pytest.approx(lr)
    assert [event.value for event in events.Scalars("lr-SGD")] == pytest.approx([lr] * 3)  # no decay in 3 epochs
    checkpoint = load_checkpoint(lr_find_run["best_checkpoint"])
    assert checkpoint["hyper_parameters"]["run_config"]["optimizer"]["lr"] == lr


def test_lr_find_trains_exactly_as_a_run_given_the_suggested_rate(lr_find_run: dict, train_config) -> None:
    lr = OmegaConf.load(Path(lr_find_run["output_dir"]) / "config.yaml").optimizer.lr
    summary = train(train_config(f"optimizer.lr={lr!r}", "trainer.max_epochs=3"))
    assert summary["test/loss"] == pytest.approx(lr_find_run["test/loss"], abs=1e-6)


def test_lr_find_reads_the_data_once_and_leaves_the_callers_config_as_it_was(
    train_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = []
    read_splits = DigitsDataModule._read_splits
    monkeypatch.setattr(DigitsDataModule, "_read_splits", lambda self: reads.append(self) or read_splits(self))
    cfg = train_config("lr_find=true", "trainer.max_epochs=3", "test=false")
    summary = train(cfg)
    assert OmegaConf.load(Path(summary["output_dir"]) / "config.yaml").optimizer.lr != 0.05  # trained with another
    assert cfg.optimizer.lr == 0.05
    assert len(reads) == 1


def test_lr_find_is_skipped_under_fast_dev_run(train_config, capsys: pytest.CaptureFixture) -> None:
    cfg = train_config("lr_find=true", "debug=fdr")
    train(cfg)
    assert "lr_find: skipped (fast_dev_run)" in capsys.readouterr().out
    assert cfg.optimizer.lr == 0.05 and not (Path(cfg.paths.output_dir) / "lr_find.png").exists()


def test_lr_find_cut_short_by_the_epochs_keeps_the_configured_rate(train_config, capsys: pytest.CaptureFixture):
    cfg = train_config("lr_find=true", "trainer.max_epochs=1", "test=false")  # 40 batches: the test stops at 40
    train(cfg)
    out = capsys.readouterr().out
    assert "lr_find: not used: the test ran 40 of its 100 steps (the run's epochs have no more training batches)" in out
    assert cfg.optimizer.lr == 0.05


class RangeTest:
    """What find_learning_rate reads of Lightning's finder: the rates and smoothed losses, the steps asked for."""

    def __init__(self, losses: list[float], best: int) -> None:
        self.num_training = len(losses)
        self.results = {"lr": [1e-8 * 10 ** (8 * step / len(losses)) for step in range(len(losses))], "loss": losses}
        self.best = best

    def suggestion(self) -> float:
        return self.results["lr"][self.best]

    def plot(self, suggest: bool, ax: Any) -> None:
        ax.plot(self.results["lr"], self.results["loss"])


@pytest.mark.parametrize(("best", "used"), [(50, True), (5, False), (95, False)])
def test_lr_find_does_not_use_a_suggestion_at_an_edge_of_the_range(
    best: int, used: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from training import lr_finder

    losses = [2.3 - 0.01 * step for step in range(100)]
    monkeypatch.setattr(lr_finder.Tuner, "lr_find", lambda self, *args, **kwargs: RangeTest(losses, best))
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    suggestion = lr_finder.find_learning_rate(trainer, None, None, tmp_path / "lr_find.png")
    assert (suggestion is not None) == used
    if not used:
        assert "lies at an edge of the rates tried; the configured learning rate stays" in capsys.readouterr().out
