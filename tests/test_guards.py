"""The training guards: the initial-loss check and the stop on a non-finite loss, gradient or weight."""

import math
import re
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import run_script
from test_train import read_events
from training.config import UserError
from training.guards import InitialLossCheck, InitialLossWarning, NanGuard, TrainingDiverged
from training.tasks import load_checkpoint, train

# The digits run diverges in its second epoch: ReLU units (unbounded, unlike the default tanh) and a learning
# rate multiplied by 1e6 after the first epoch, from 0.05 to 5e4. Every epoch is checkpointed: Lightning writes
# last.ckpt only along with a top-k checkpoint, and a NaN validation loss never ranks among the best.
DIVERGING = [
    "model.activation=relu",
    "scheduler=exponential",
    "scheduler.gamma=1e6",
    "trainer.max_epochs=3",
    "+trainer.limit_train_batches=5",
    "callbacks.model_checkpoint.save_top_k=-1",
]


def finite_weights(checkpoint: dict) -> bool:
    return all(value.isfinite().all() for value in checkpoint["state_dict"].values() if value.is_floating_point())


def test_nan_guard_stops_the_run_and_keeps_the_last_good_checkpoint(train_config) -> None:
    cfg = train_config(*DIVERGING)
    with pytest.raises(TrainingDiverged) as raised:
        train(cfg)
    message = str(raised.value)
    found = re.search(
        r"a non-finite (?:training loss|gradient norm|weight norm) at step (\d+) \(epoch 1\); "
        r"last finite loss (\S+), learning rate 5e\+04\. "
        r"Try a lower learning rate, e.g. a tenth: optimizer\.lr=0\.005\. The checkpoints written before are kept: "
        r"(\S+)$",
        message,
    )
    assert found, message
    assert 5 < int(found[1]) <= 10  # a step of the second epoch
    assert math.isfinite(float(found[2]))
    checkpoints = Path(cfg.paths.output_dir) / "checkpoints"
    assert found[3] == str(checkpoints / "last.ckpt")
    assert sorted(path.name for path in checkpoints.iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]
    for path in checkpoints.iterdir():
        checkpoint = load_checkpoint(path)
        assert checkpoint["epoch"] == 0 and finite_weights(checkpoint)


def test_without_the_guard_the_same_run_writes_nan_weights_to_last_ckpt(train_config) -> None:
    cfg = train_config(*DIVERGING, "guards=none", "test=false")
    train(cfg)
    checkpoints = Path(cfg.paths.output_dir) / "checkpoints"
    assert len(list(checkpoints.iterdir())) == 4  # best-epoch000 to 002 and last
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2 and not finite_weights(last)
    with pytest.raises(UserError, match=r"last.ckpt is damaged: its weight net\..* holds (NaN|an infinity)"):
        load_checkpoint(checkpoints / "last.ckpt")  # what the project's readers make of it


def test_the_script_ends_a_diverging_run_in_one_error_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py", *DIVERGING, "trainer.accelerator=cpu", "callbacks.progress_bar=null", f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: training diverged: a non-finite")
    assert "Traceback" not in result.stderr
    assert finite_weights(load_checkpoint(run_dir / "checkpoints" / "last.ckpt"))


class TinyClassifier(pl.LightningModule):
    """Softmax regression on 4 features, with a way to spoil the loss, the gradient or the step at one batch."""

    def __init__(self, lr: float = 0.1, spoil: str = "", at_batch: int = 3, scale: float = 0.0) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        if scale:
            nn.init.zeros_(self.linear.bias)
            with torch.no_grad():
                self.linear.weight.copy_(scale * torch.eye(3, 4))
        self.criterion = nn.CrossEntropyLoss()
        self.lr, self.spoil, self.at_batch = lr, spoil, at_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.criterion(self(batch[0]), batch[1])
        if batch_idx == self.at_batch and self.spoil == "loss":
            loss = loss * float("nan")
        if batch_idx == self.at_batch and self.spoil == "gradient":
            self.linear.weight.register_hook(lambda grad: torch.full_like(grad, float("inf")))
        if batch_idx == self.at_batch and self.spoil == "weight":
            for group in self.trainer.optimizers[0].param_groups:
                group["lr"] = 3e38  # finite, but the step overflows float32
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def tiny_loader(batch_size: int = 8) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (64,), generator=generator)
    inputs = nn.functional.one_hot(labels, 4).float() + 0.1 * torch.randn(64, 4, generator=generator)
    return DataLoader(TensorDataset(inputs, labels), batch_size=batch_size)


def fit(module: pl.LightningModule, callback: pl.Callback, batch_size: int = 8, **trainer_args) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[callback], **trainer_args,
    )  # fmt: skip
    trainer.fit(module, tiny_loader(batch_size))
    return trainer


@pytest.mark.parametrize(
    ("spoil", "every", "what", "step"),
    [
        ("loss", 50, "training loss", 4),  # read at the end of the epoch (step 8): the first non-finite loss is named
        ("loss", 2, "training loss", 4),
        ("gradient", 4, "gradient norm", 4),  # read before step 4 is taken
        ("gradient", 50, "training loss", 5),  # not read at step 4: its update spoils the weights, and so step 5's loss
    ],
)
def test_nan_guard_names_the_first_step_that_is_not_finite(spoil: str, every: int, what: str, step: int) -> None:
    module = TinyClassifier(spoil=spoil)
    with pytest.raises(TrainingDiverged, match=rf"a non-finite {what} at step {step} \(epoch 0\); last finite loss \d"):
        fit(module, NanGuard(), log_every_n_steps=every)
    # read every `every` steps (and at the end of the epoch): the run stops at the first read after the spoilt step
    assert module.trainer.global_step == min(-(-step // every) * every, 8)


def test_nan_guard_catches_a_step_that_overflows_the_weights() -> None:
    module = TinyClassifier(spoil="weight")
    with pytest.raises(TrainingDiverged, match=r"a non-finite weight norm at step 4 \(epoch 0\).*learning rate 3e\+38"):
        fit(module, NanGuard(), log_every_n_steps=4)


class ValidatedTinyClassifier(TinyClassifier):
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", self.criterion(self(batch[0]), batch[1]))


@pytest.mark.parametrize("checkpoints", [False, True])
def test_nan_guard_checks_the_last_steps_weights_before_a_checkpoint_and_at_the_end(
    tmp_path: Path, checkpoints: bool
) -> None:
    """The overflowing step is the epoch's last, so no later step checks its weights: the checkpoint written at the
    end of the epoch (with a validation before it), or else the end of training, does."""
    module = ValidatedTinyClassifier(spoil="weight", at_batch=7)
    extra = {"val_dataloaders": tiny_loader()} if checkpoints else {}
    callbacks = [NanGuard(), *([ModelCheckpoint(dirpath=tmp_path, save_last=True)] if checkpoints else [])]
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=checkpoints, enable_progress_bar=False,
        enable_model_summary=False, callbacks=callbacks,
    )  # fmt: skip
    with pytest.raises(TrainingDiverged, match=r"a non-finite weight norm at step 8 \(epoch 0\)"):
        trainer.fit(module, tiny_loader(), **extra)
    assert list(tmp_path.iterdir()) == []  # no checkpoint holds the broken weights


def test_nan_guard_lets_a_finite_run_finish() -> None:
    trainer = fit(TinyClassifier(), NanGuard())
    assert trainer.global_step == 8


def read_initial_loss(summary: dict) -> tuple[float, float]:
    events = read_events(summary["tensorboard_dir"])
    (loss,), (expected,) = events.Scalars("sanity/initial_loss"), events.Scalars("sanity/expected_initial_loss")
    assert loss.step == expected.step == 0
    return loss.value, expected.value


QUICK = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "test=false"]


def test_initial_loss_check_warns_for_huge_initial_weights(train_config) -> None:
    with pytest.warns(InitialLossWarning, match=r"initial loss \S+ is far from ln\(10\) = 2\.303.*too large"):
        summary = train(train_config("init=normal", "model.init_std=10", *QUICK))
    loss, expected = read_initial_loss(summary)
    assert expected == pytest.approx(math.log(10)) and loss > 3 * expected


def test_initial_loss_check_is_silent_for_the_default_initialisation(train_config) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = train(train_config(*QUICK))
    assert not [warning for warning in caught if issubclass(warning.category, InitialLossWarning)]
    loss, expected = read_initial_loss(summary)  # the check ran, and found the loss near ln 10
    assert 0.5 * expected <= loss <= 3 * expected


def test_initial_loss_check_warns_for_a_network_that_knows_the_labels_already() -> None:
    assert InitialLossCheck.min_examples(3, 0.5) == 37
    with pytest.warns(InitialLossWarning, match=r"initial loss \S+ is far from ln\(3\).*leak into the inputs"):
        fit(TinyClassifier(scale=20.0), InitialLossCheck(), batch_size=37)


@pytest.mark.parametrize("batch_size", [1, 8, 36])
def test_initial_loss_check_does_not_call_a_few_examples_a_leak(batch_size: int) -> None:
    """A network that knows the labels, but a first batch too small to tell it from one that was lucky: silent."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(TinyClassifier(scale=20.0), InitialLossCheck(), batch_size=batch_size, max_steps=1)
    assert not [warning for warning in caught if issubclass(warning.category, InitialLossWarning)]


@pytest.mark.parametrize("classes", [3, 10])
def test_initial_loss_check_min_examples_bounds_the_false_alarms_of_a_network_that_knows_nothing(classes: int) -> None:
    """Peaked softmax outputs with labels drawn independently of them: one example is often far below ln C (the
    false alarm the minimum prevents), a batch of min_examples in at most ALPHA of the batches."""
    generator = torch.Generator().manual_seed(0)
    batches, n = 20000, InitialLossCheck.min_examples(classes, 0.5)
    logits = 3.0 * torch.randn(batches, n, classes, generator=generator)
    labels = torch.randint(0, classes, (batches, n), generator=generator)
    losses = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(batches, n)
    bound = 0.5 * math.log(classes)
    assert (losses[:, 0] < bound).float().mean() > 10 * InitialLossCheck.ALPHA
    assert (losses.mean(dim=1) < bound).float().mean() <= InitialLossCheck.ALPHA


def test_initial_loss_check_skips_modules_without_a_softmax_cross_entropy(train_config) -> None:
    cfg = train_config("module=multilabel", "data=digits_attributes", "init=normal", "model.init_std=10", *QUICK)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = train(cfg)
    assert not [warning for warning in caught if issubclass(warning.category, InitialLossWarning)]
    assert "sanity/initial_loss" not in read_events(summary["tensorboard_dir"]).Tags()["scalars"]


def test_guards_are_callbacks_that_guards_none_removes(train_config) -> None:
    assert {"nan_guard", "initial_loss_check"} <= set(train_config().callbacks)
    assert not {"nan_guard", "initial_loss_check"} & set(train_config("guards=none").callbacks)


def test_initial_loss_check_refuses_bounds_that_exclude_chance() -> None:
    with pytest.raises(ValueError, match="expected 0 < low < 1 < high"):
        InitialLossCheck(low=1.5, high=3.0)
