"""Training through the composed config: one batch, a short run, its TensorBoard events, and eval."""

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_config
from training.config import UserError
from training.tasks import evaluate, train


def read_events(log_dir: str) -> EventAccumulator:
    events = EventAccumulator(log_dir, size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_fast_dev_run_trains_validates_and_tests_one_batch(train_config) -> None:
    summary = train(train_config("debug=fdr"))
    assert 0.0 <= summary["test/acc"] <= 1.0
    assert summary["best_checkpoint"] is None and summary["last_checkpoint"] is None
    assert not (Path(summary["output_dir"]) / "checkpoints").exists()  # nothing written, however big the model


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two epochs of a few batches each, with checkpoints and TensorBoard."""
    run_dir = tmp_path_factory.mktemp("short")
    cfg = compose_config(
        "train",
        run_dir,
        [
            "trainer.accelerator=cpu",
            "trainer.max_epochs=2",
            "+trainer.limit_train_batches=12",
            "trainer.log_every_n_steps=2",
            "callbacks.progress_bar=null",
        ],
    )
    return train(cfg)


def test_short_run_leaves_checkpoints_config_and_metrics(short_run: dict) -> None:
    run_dir = Path(short_run["output_dir"])
    assert Path(short_run["best_checkpoint"]).parent == run_dir / "checkpoints"
    assert Path(short_run["last_checkpoint"]) == run_dir / "checkpoints" / "last.ckpt"
    assert (run_dir / "config.yaml").read_text().count("${") == 0  # resolved
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written["test/acc"] == pytest.approx(short_run["test/acc"])
    assert 0.3 < short_run["test/acc"] <= 1.0  # two short epochs already learn something


def test_tensorboard_holds_losses_accuracies_learning_rate_and_hparams(short_run: dict) -> None:
    events = read_events(short_run["tensorboard_dir"])
    scalars = set(events.Tags()["scalars"])
    expected = {
        "train/loss_step", "train/loss_epoch", "train/acc_step", "train/acc_epoch",
        "val/loss", "val/acc", "val/acc_top5", "val/acc_best", "test/loss", "test/acc", "lr-SGD",
    }  # fmt: skip
    assert expected <= scalars
    assert len(events.Scalars("val/acc")) == 2  # one per epoch
    assert [e.value for e in events.Scalars("lr-SGD")] == pytest.approx([0.05, 0.05])
    assert all(e.value > 0 for e in events.Scalars("train/loss_step"))
    first, last = events.Scalars("train/loss_step")[0].value, events.Scalars("train/loss_step")[-1].value
    assert last < first
    hparams = events.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in hparams
    assert b"optimizer/lr" in hparams["_hparams_/session_start_info"]


def test_eval_reproduces_the_test_metrics_from_the_checkpoint_alone(short_run: dict, tmp_path: Path) -> None:
    cfg = compose_config("eval", tmp_path, [f"ckpt_path={short_run['best_checkpoint']}", "trainer.accelerator=cpu"])
    metrics = evaluate(cfg)
    assert metrics["test/acc"] == pytest.approx(short_run["test/acc"], abs=1e-6)
    assert json.loads((tmp_path / "metrics.json").read_text())["test/acc"] == pytest.approx(metrics["test/acc"])


def test_eval_builds_no_optimizer_and_reads_the_test_data_only(short_run: dict, tmp_path: Path, built) -> None:
    cfg = compose_config("eval", tmp_path, [f"ckpt_path={short_run['best_checkpoint']}", "trainer.accelerator=cpu"])
    metrics = evaluate(cfg)
    assert built["optimizers"] == [] and set(built["stages"]) == {"test"}
    assert metrics["test/acc"] == pytest.approx(short_run["test/acc"], abs=1e-6)
    assert metrics["test/loss"] == pytest.approx(short_run["test/loss"], abs=1e-6)
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # what the count would have seen
    assert built["optimizers"] == ["SGD"]


def test_a_run_never_writes_over_an_earlier_one(short_run: dict) -> None:
    run_dir = Path(short_run["output_dir"])
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    cfg = compose_config("train", run_dir, ["trainer.accelerator=cpu"])
    with pytest.raises(UserError, match="already holds checkpoints of an earlier run; nothing was changed"):
        train(cfg)
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "checkpoint not found"),
        (b"not a checkpoint", "is not a readable PyTorch checkpoint"),
    ],
)
def test_eval_refuses_missing_and_broken_checkpoints(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "model.ckpt"
    if content is not None:
        path.write_bytes(content)
    cfg = compose_config("eval", tmp_path / "eval", [f"ckpt_path={path}"])
    with pytest.raises(UserError, match=message):
        evaluate(cfg)


def test_eval_refuses_a_checkpoint_that_is_not_ours(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    cfg = compose_config("eval", tmp_path / "eval", [f"ckpt_path={path}"])
    with pytest.raises(UserError, match="is not a classicnets training checkpoint"):
        evaluate(cfg)
