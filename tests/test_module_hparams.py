"""The four LightningModules' arguments: those passed on to TrainingModule are checked as their own, and the plain
data among them is what a checkpoint's ``hyper_parameters`` holds."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from training import Classifier, LanguageModel, MultiLabelClassifier, Regressor
from training.config import UserError, check_arguments
from training.finetune import FineTuning
from training.regularization import L1

SGD = functools.partial(torch.optim.SGD, lr=0.1)
RUN_CONFIG = {"model": {"name": "lenet5"}, "seed": 7}

# Each module's hyperparameters with their defaults: what checkpoints have held since the modules were written.
DEFAULTS: dict[type[pl.LightningModule], dict[str, Any]] = {
    Classifier: {
        "num_classes": 3,
        "scheduler_interval": "epoch",
        "scheduler_monitor": "val/acc",
        "aux_loss_weight": 0.3,
        "loss": "cross_entropy",
        "label_smoothing": 0.0,
        "decay_bias_and_norm": False,
        "run_config": None,
    },
    Regressor: {
        "scheduler_interval": "epoch",
        "scheduler_monitor": "val/loss",
        "decay_bias_and_norm": False,
        "run_config": None,
    },
    MultiLabelClassifier: {
        "num_labels": 3,
        "scheduler_interval": "epoch",
        "scheduler_monitor": "val/loss",
        "threshold": 0.5,
        "aux_loss_weight": 0.3,
        "decay_bias_and_norm": False,
        "run_config": None,
    },
    LanguageModel: {
        "vocab": "abc",
        "scheduler_interval": "epoch",
        "scheduler_monitor": "val/loss",
        "decay_bias_and_norm": False,
        "run_config": None,
    },
}
OWN = {
    Classifier: {"num_classes": 3},
    Regressor: {},
    MultiLabelClassifier: {"num_labels": 3},
    LanguageModel: {"vocab": "abc"},
}
CHANGED = {
    Classifier: {"aux_loss_weight": 0.5, "loss": "hinge"},
    Regressor: {},
    MultiLabelClassifier: {"threshold": 0.25, "aux_loss_weight": 0.1},
    LanguageModel: {},
}


@pytest.mark.parametrize("cls", list(DEFAULTS), ids=lambda cls: cls.__name__)
def test_the_hyperparameters_are_the_plain_arguments_with_their_defaults(cls: type[pl.LightningModule]) -> None:
    module = cls(nn.Linear(4, 3), SGD, **OWN[cls])
    assert dict(module.hparams) == DEFAULTS[cls]


@pytest.mark.parametrize("cls", list(DEFAULTS), ids=lambda cls: cls.__name__)
def test_the_hyperparameters_hold_the_values_given_and_leave_out_the_objects(cls: type[pl.LightningModule]) -> None:
    given = {
        **OWN[cls],
        **CHANGED[cls],
        "scheduler_interval": "step",
        "scheduler_monitor": "train/loss",
        "decay_bias_and_norm": True,
        "run_config": RUN_CONFIG,
    }
    module = cls(
        nn.Linear(4, 3),
        SGD,
        scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1),
        regularizer=L1(0.01),
        finetune=FineTuning(),
        **given,
    )
    assert dict(module.hparams) == {**DEFAULTS[cls], **given}


def test_a_checkpoint_keeps_the_hyperparameters_and_loads_with_them(tmp_path: Path) -> None:
    module = Classifier(nn.Linear(4, 3), SGD, num_classes=3, label_smoothing=0.1, run_config=RUN_CONFIG)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.validate(module, DataLoader(TensorDataset(torch.randn(4, 4), torch.tensor([0, 1, 2, 0]))), verbose=False)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    checkpoint = torch.load(tmp_path / "model.ckpt", weights_only=True)
    expected = {**DEFAULTS[Classifier], "label_smoothing": 0.1, "run_config": RUN_CONFIG}
    assert checkpoint["hyper_parameters"] == expected and checkpoint["hparams_name"] == "kwargs"
    restored = Classifier.load_from_checkpoint(tmp_path / "model.ckpt", net=nn.Linear(4, 3), optimizer=None)
    assert dict(restored.hparams) == expected


@pytest.mark.parametrize("cls", list(DEFAULTS), ids=lambda cls: cls.__name__)
def test_the_arguments_passed_on_are_checked_and_listed_as_the_modules_own(cls: type[pl.LightningModule]) -> None:
    check_arguments(cls, OmegaConf.create({**OWN[cls], "scheduler_interval": "step", "run_config": {}}), "module")
    with pytest.raises(UserError, match=r"^module.decay_bias_and_norm: expected bool, got 'abc' \(str\)$"):
        check_arguments(cls, OmegaConf.create({"decay_bias_and_norm": "abc"}), "module")
    with pytest.raises(UserError, match=r"^module.decay: not an argument of training\.") as error:
        check_arguments(cls, OmegaConf.create({"decay": True}), "module")
    listed = str(error.value).split("; accepted: ")[1].split(", ")
    assert sorted(listed) == sorted([*DEFAULTS[cls], "net", "optimizer", "scheduler", "regularizer", "finetune"])
