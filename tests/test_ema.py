"""ema=enabled: an exponential moving average of the weights, validated, checkpointed, tested and resumed."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.nn import functional as F

from conftest import compose_config, model_inputs
from training.ema import EMA
from training.tasks import build, evaluate, train

DECAY = 0.9  # short runs: an average over about ten steps, far from the live weights yet


class LiveWeights(pl.Callback):
    """The live weights after every optimizer step, and the states of both models when fitting starts."""

    def __init__(self, ema: EMA) -> None:
        self.ema = ema
        self.steps: list[dict[str, torch.Tensor]] = []
        self.at_start: dict[str, dict[str, torch.Tensor]] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.at_start = {
            "live": {key: value.clone() for key, value in pl_module.state_dict().items()},
            "average": {key: value.clone() for key, value in self.ema._average_model.module.state_dict().items()},
            "n_averaged": self.ema._average_model.n_averaged.item(),
        }

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        self.steps.append({key: value.clone() for key, value in pl_module.state_dict().items()})


def fit(cfg, checkpoint_dir: Path, max_epochs: int, ckpt_path: str | None = None) -> tuple:
    datamodule, module = build(cfg)
    ema = EMA(decay=DECAY)
    recorder = LiveWeights(ema)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        limit_train_batches=5,
        callbacks=[ema, recorder, ModelCheckpoint(dirpath=checkpoint_dir, save_last=True)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    return trainer, datamodule, module, recorder


def expected_average(steps: list[dict[str, torch.Tensor]], start: dict[str, torch.Tensor] | None = None) -> dict:
    """The EMA of the live weights after each step; the first update copies the weights unless resuming."""
    average = start
    for weights in steps:
        if average is None:
            average = dict(weights)
        else:
            average = {key: DECAY * average[key] + (1 - DECAY) * weights[key] for key in average}
    return average


def assert_states_close(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def states_differ(first: dict, second: dict) -> bool:
    return any(not torch.allclose(first[key], second[key], atol=1e-4) for key in first)


def split_loss(module: pl.LightningModule, state: dict, datamodule, split: str) -> float:
    module.load_state_dict(state)
    module.eval()
    images, labels = model_inputs(datamodule, split)
    with torch.no_grad():
        return F.cross_entropy(module(images), labels).item()


@pytest.fixture(scope="module")
def ema_fit(tmp_path_factory: pytest.TempPathFactory) -> dict:
    run_dir = tmp_path_factory.mktemp("ema")
    cfg = compose_config("train", run_dir, ["trainer.accelerator=cpu"])
    pl.seed_everything(0)
    trainer, datamodule, module, recorder = fit(cfg, run_dir / "checkpoints", max_epochs=2)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return {
        "cfg": cfg,
        "run_dir": run_dir,
        "trainer": trainer,
        "datamodule": datamodule,
        "module": module,
        "recorder": recorder,
        "checkpoint": checkpoint,
    }


def test_ema_enabled_adds_lightnings_ema_callback(tmp_path: Path) -> None:
    callbacks = compose_config("train", tmp_path, ["ema=enabled"]).callbacks
    assert callbacks.ema._target_ == "training.ema.EMA"
    assert callbacks.ema.decay == 0.995
    assert "model_checkpoint" in callbacks
    assert "ema" not in compose_config("train", tmp_path, []).callbacks


@pytest.mark.parametrize(("device", "root_device", "expected"), [(None, "meta", "meta"), ("meta", "cpu", "meta")])
def test_the_average_follows_the_model_to_its_device_unless_told_otherwise(device, root_device, expected) -> None:
    # Lightning calls the callback's setup before it moves the model to the accelerator ("meta" stands in for one)
    module = pl.LightningModule()
    module.layer = nn.Linear(3, 2)
    ema = EMA(device=device)
    ema.setup(SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(root_device))), module, "fit")
    assert {p.device.type for p in ema._average_model.parameters()} == {expected}


def test_the_checkpoint_holds_the_average_of_the_live_weights(ema_fit: dict) -> None:
    checkpoint, steps = ema_fit["checkpoint"], ema_fit["recorder"].steps
    assert len(steps) == 10  # two epochs of five steps, no step after the last validation
    assert_states_close(checkpoint["state_dict"], expected_average(steps))
    assert_states_close(checkpoint["current_model_state"], steps[-1])  # what Lightning keeps for resuming
    assert states_differ(checkpoint["state_dict"], checkpoint["current_model_state"])
    assert checkpoint["averaging_state"]["n_averaged"].item() == 10


def test_validation_runs_with_the_averaged_weights(ema_fit: dict) -> None:
    checkpoint, datamodule = ema_fit["checkpoint"], ema_fit["datamodule"]
    logged = ema_fit["trainer"].callback_metrics["val/loss"].item()  # the last epoch's, after the last step
    module = build(ema_fit["cfg"])[1]
    average_loss = split_loss(module, checkpoint["state_dict"], datamodule, "val")
    live_loss = split_loss(module, checkpoint["current_model_state"], datamodule, "val")
    assert logged == pytest.approx(average_loss, rel=1e-5)
    assert abs(average_loss - live_loss) > 1e-3


def test_the_average_replaces_the_live_weights_when_fitting_ends(ema_fit: dict) -> None:
    assert_states_close(ema_fit["module"].state_dict(), ema_fit["checkpoint"]["state_dict"])


def test_eval_of_the_checkpoint_evaluates_the_average(ema_fit: dict, tmp_path: Path) -> None:
    path = ema_fit["run_dir"] / "checkpoints" / "last.ckpt"
    metrics = evaluate(compose_config("eval", tmp_path, [f"ckpt_path={path}", "trainer.accelerator=cpu"]))
    module = build(ema_fit["cfg"])[1]
    checkpoint, datamodule = ema_fit["checkpoint"], ema_fit["datamodule"]
    assert metrics["test/loss"] == pytest.approx(split_loss(module, checkpoint["state_dict"], datamodule, "test"))


def test_resuming_restores_both_the_average_and_the_live_weights(ema_fit: dict, tmp_path: Path) -> None:
    checkpoint = ema_fit["checkpoint"]
    path = ema_fit["run_dir"] / "checkpoints" / "last.ckpt"
    _, _, _, recorder = fit(ema_fit["cfg"], tmp_path, max_epochs=3, ckpt_path=str(path))
    assert_states_close(recorder.at_start["average"], checkpoint["state_dict"])
    assert_states_close(recorder.at_start["live"], checkpoint["current_model_state"])
    assert recorder.at_start["n_averaged"] == 10
    # the average goes on from the checkpoint's: one more epoch of five steps
    resumed = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert len(recorder.steps) == 5
    assert_states_close(resumed["state_dict"], expected_average(recorder.steps, start=checkpoint["state_dict"]))


def test_training_tests_the_average_as_eval_does(tmp_path: Path) -> None:
    overrides = ["ema=enabled", f"callbacks.ema.decay={DECAY}", "+trainer.limit_train_batches=8"]
    fast = ["trainer.accelerator=cpu", "callbacks.progress_bar=null", "callbacks.model_summary=null"]
    summary = train(compose_config("train", tmp_path / "run", [*fast, "trainer.max_epochs=1", *overrides]))
    metrics = evaluate(
        compose_config("eval", tmp_path, [f"ckpt_path={summary['best_checkpoint']}", "trainer.accelerator=cpu"])
    )
    assert summary["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-6)
    checkpoint = torch.load(summary["best_checkpoint"], weights_only=True)
    cfg = compose_config("train", tmp_path / "live", fast)
    datamodule, module = build(cfg)
    live_loss = split_loss(module, checkpoint["current_model_state"], datamodule, "test")
    assert abs(summary["test/loss"] - live_loss) > 1e-3  # Lightning's own callback would test these
