"""Optimizers and learning-rate schedules as configuration: every option trains, the schedules have their values."""

from __future__ import annotations

import functools
import io
import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from conftest import CONFIG_DIR
from training import Classifier
from training.cli import check_overrides
from training.config import UserError, instantiate
from training.schedulers import InverseTimeDecay, with_warmup
from training.tasks import build, build_scheduler, train

OPTIMIZERS = sorted(path.stem for path in (CONFIG_DIR / "optimizer").glob("*.yaml"))
SCHEDULERS = sorted(path.stem for path in (CONFIG_DIR / "scheduler").glob("*.yaml"))
FEW_BATCHES = ["+trainer.limit_train_batches=2", "+trainer.limit_val_batches=2"]


def test_the_groups_have_the_options_of_the_issue() -> None:
    assert {"sgd", "adagrad", "rmsprop", "adam", "adamw", "lbfgs"} <= set(OPTIMIZERS)
    assert {"step", "multistep", "exponential", "inverse_time", "plateau", "cosine", "none"} <= set(SCHEDULERS)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_trains_through_the_config(train_config, optimizer: str) -> None:
    summary = train(train_config(f"optimizer={optimizer}", "debug=fdr"))
    assert math.isfinite(summary["test/loss"])


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("warmup", [0, 2])
def test_every_scheduler_trains_through_the_config_with_and_without_warmup(
    train_config, scheduler: str, warmup: int
) -> None:
    if scheduler == "plateau" and warmup:
        pytest.skip("refused: test_a_warmup_cannot_precede_reduce_on_plateau")
    summary = train(train_config(f"scheduler={scheduler}", f"scheduler.warmup={warmup}", "debug=fdr"))
    assert math.isfinite(summary["test/loss"])


def learning_rates(train_config, steps: int, *overrides: str) -> list[float]:
    """The learning rate of each of ``steps`` scheduler steps, the schedule built from the composed config."""
    cfg = train_config(*overrides)
    factory, _ = build_scheduler(cfg.scheduler)
    optimizer = instantiate(cfg.optimizer, "optimizer")([nn.Parameter(torch.zeros(1))])
    scheduler = factory(optimizer)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_inverse_time_decay_is_lr_over_one_plus_k_t(train_config) -> None:
    rates = learning_rates(train_config, 6, "scheduler=inverse_time", "scheduler.k=0.5", "optimizer.lr=0.2")
    assert rates == pytest.approx([0.2 / (1 + 0.5 * t) for t in range(6)])
    assert InverseTimeDecay(0.1)(10) == pytest.approx(0.5)


def test_multistep_divides_at_its_milestones(train_config) -> None:
    rates = learning_rates(train_config, 7, "scheduler=multistep", "scheduler.milestones=[2,5]", "optimizer.lr=1.0")
    assert rates == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.01, 0.01])


def test_warmup_ramps_linearly_then_hands_over_to_the_schedule(train_config) -> None:
    rates = learning_rates(
        train_config, 8, "scheduler=step", "scheduler.step_size=2", "scheduler.gamma=0.5", "scheduler.warmup=3"
    )
    lr = 0.05
    # (t + 1) / (warmup + 1) of the rate for t < 3, then StepLR from its own step 0
    assert rates == pytest.approx([lr / 4, lr / 2, 3 * lr / 4, lr, lr, lr / 2, lr / 2, lr / 4])


def test_warmup_before_a_constant_rate(train_config) -> None:
    assert learning_rates(train_config, 5, "scheduler=none", "scheduler.warmup=1") == pytest.approx(
        [0.025, 0.05, 0.05, 0.05, 0.05]
    )
    assert build_scheduler(train_config("scheduler=none").scheduler) == (None, {})


def test_cosine_anneals_over_the_run_by_default(train_config) -> None:
    cfg = train_config("scheduler=cosine", "trainer.max_epochs=4")
    assert cfg.scheduler.T_max == 4
    rates = learning_rates(train_config, 5, "scheduler=cosine", "trainer.max_epochs=4", "optimizer.lr=1.0")
    assert rates == pytest.approx([1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2, 0])


def test_warmed_up_schedules_checkpoint_as_plain_data() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = with_warmup(
        optimizer, 2, functools.partial(torch.optim.lr_scheduler.LambdaLR, lr_lambda=InverseTimeDecay(1))
    )
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True)["_schedulers"][1]["lr_lambdas"] == [{"k": 1}]


def test_a_warmup_cannot_precede_reduce_on_plateau(train_config) -> None:
    with pytest.raises(UserError, match=r"^scheduler: ReduceLROnPlateau cannot follow a warmup .*set warmup: 0$"):
        build(train_config("scheduler=plateau", "scheduler.warmup=2"))


def test_a_monitored_metric_that_nobody_logs_fails_before_training(train_config) -> None:
    with pytest.raises(
        UserError,
        match=r"^scheduler.monitor: Classifier does not log 'val/accuracy'; did you mean [^?]*val/acc\b[^?]*\? "
        r"accepted: val/loss, val/acc, ",
    ):
        build(train_config("scheduler=plateau", "scheduler.monitor=val/accuracy"))
    with pytest.raises(UserError, match=r"^scheduler.monitor: Regressor does not log 'val/acc'; accepted: val/loss, "):
        build(train_config("experiment=gru_adding", "scheduler=plateau"))
    _, module = build(train_config("experiment=gru_adding", "scheduler=plateau", "scheduler.monitor=val/loss"))
    assert module.scheduler_monitor == "val/loss"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["scheduler.interval=iteration"], r"^scheduler.interval: expected 'epoch' or 'step', got 'iteration'$"),
        (["scheduler.warmup=-1"], r"^scheduler.warmup: expected a number of epochs, 0 or more, got -1$"),
    ],
)
def test_bad_interval_or_warmup_is_one_line(train_config, overrides: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        build(train_config(*overrides))


def test_unknown_optimizer_and_scheduler_names_are_one_line() -> None:
    with pytest.raises(UserError, match=r"^unknown optimizer 'rmsprob'; did you mean rmsprop\? accepted: adagrad, "):
        check_overrides(["optimizer=rmsprob"])
    with pytest.raises(UserError, match=r"^unknown scheduler 'cosin'; did you mean cosine\? accepted: cosine, "):
        check_overrides(["scheduler=cosin"])


def fit(train_config, *overrides: str, callbacks: list[pl.Callback] = ()) -> tuple[pl.Trainer, pl.LightningModule]:
    cfg = train_config(*FEW_BATCHES, *overrides)
    datamodule, module = build(cfg)
    trainer = instantiate(cfg.trainer, "trainer", callbacks=list(callbacks), logger=False, enable_checkpointing=False)
    trainer.fit(module, datamodule=datamodule)
    return trainer, module


@pytest.mark.parametrize(("patience", "reduced"), [(1, True), (5, False)])
def test_plateau_divides_by_ten_when_validation_accuracy_stalls_for_patience_epochs(
    train_config, patience: int, reduced: bool
) -> None:
    # an improvement must gain more than 1 (absolute), which no accuracy can: every epoch after the first is a bad
    # one, and after epoch 2 there have been two, more than a patience of 1
    trainer, _ = fit(
        train_config, "scheduler=plateau", f"scheduler.patience={patience}", "scheduler.threshold_mode=abs",
        "scheduler.threshold=1.0", "trainer.max_epochs=3",
    )  # fmt: skip
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.005 if reduced else 0.05)


def test_interval_step_steps_the_schedule_every_optimizer_step(train_config) -> None:
    trainer, _ = fit(
        train_config, "scheduler=multistep", "scheduler.interval=step", "scheduler.milestones=[3]",
        "trainer.max_epochs=2",
    )  # fmt: skip
    assert trainer.global_step == 4
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.005)  # 4 steps passed the milestone 3


def test_lbfgs_learns_the_digits_from_full_batches(train_config) -> None:
    trainer, _ = fit(
        train_config, "optimizer=lbfgs", "optimizer.max_iter=5", "data.batch_size=1257", "data.augment=none",
        "scheduler=none", "trainer.max_epochs=3", "+trainer.num_sanity_val_steps=0",
    )  # fmt: skip
    assert trainer.global_step == 3
    assert trainer.callback_metrics["val/acc"] > 0.5  # 15 quasi-Newton iterations on the whole set


class GradientNorms(pl.Callback):
    """The gradients' global norm before clipping, and after it (what the optimizer stepped with)."""

    def __init__(self) -> None:
        self.before: list[float] = []
        self.after: list[float] = []

    @staticmethod
    def norm(module: pl.LightningModule) -> float:
        return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters()])).item()

    def on_before_optimizer_step(self, trainer: pl.Trainer, module: pl.LightningModule, optimizer) -> None:
        self.before.append(self.norm(module))  # Lightning clips right after this hook

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args) -> None:
        self.after.append(self.norm(module))  # the gradients stay until the next step zeroes them


@pytest.mark.parametrize("clip", [None, 0.01])
def test_gradient_clip_val_bounds_the_gradient_norm(train_config, clip: float | None) -> None:
    norms = GradientNorms()
    fit(train_config, f"trainer.gradient_clip_val={clip or 'null'}", "trainer.max_epochs=1", callbacks=[norms])
    assert len(norms.before) == len(norms.after) == 2
    assert min(norms.before) > 0.01
    if clip is None:
        assert norms.after == pytest.approx(norms.before)
    else:
        assert max(norms.after) <= clip * (1 + 1e-5)


def test_a_step_interval_can_be_given_to_the_module_directly() -> None:
    module = Classifier(
        nn.Linear(4, 3),
        functools.partial(torch.optim.SGD, lr=0.1),
        num_classes=3,
        scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1),
        scheduler_interval="step",
    )
    config = module.configure_optimizers()["lr_scheduler"]
    assert config["interval"] == "step" and config["monitor"] == "val/acc"
    assert "regularizer" not in module.hparams  # the checkpoint keeps plain data only
