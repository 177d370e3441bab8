"""The Hydra tree composes and instantiates; user mistakes in it become one clear message."""

import math
import os
import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torchvision.datasets.cifar
from omegaconf import OmegaConf

from conftest import CONFIG_DIR, ROOT, compose_config
from data import CIFAR10DataModule
from data.base import ClassificationDataModule
from test_imagefolder import write_tree
from test_torchvision_sets import write_cifar, write_mnist_like
from training.cli import check_overrides, claim_directory
from training.config import UserError, check_arguments, instantiate
from training.tasks import build, train

EXPERIMENTS = sorted(path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml"))


def test_train_config_builds_every_part(train_config) -> None:
    cfg = train_config()
    datamodule, module = build(cfg)
    assert isinstance(datamodule, ClassificationDataModule)
    assert isinstance(module, pl.LightningModule)
    assert module.hparams.run_config["model"]["name"] == "lenet5"
    callbacks = [instantiate(node, name) for name, node in cfg.callbacks.items() if node]
    loggers = [instantiate(node, name) for name, node in cfg.logger.items()]
    trainer = instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers)
    assert isinstance(trainer, pl.Trainer)
    assert trainer.max_epochs == 20


def test_model_config_reads_the_data_config(train_config) -> None:
    cfg = train_config("data.in_channels=3")
    assert cfg.model.in_channels == 3 and cfg.model.num_classes == cfg.data.num_classes == 10


def _data_for(recipe: str, root: Path) -> list[str]:
    """Write tiny files in the real format of the experiment's data set; the overrides that point at them."""
    small = ["data.batch_size=2"]
    if "data: text" in recipe:  # long enough for the text experiments' default batches
        text = root / "text.txt"
        text.write_text("the quick brown fox jumps over the lazy dog. " * 2000, encoding="utf-8")
        return [f"data.path={text}"]
    if "data: seq_mnist" in recipe or "data: mnist" in recipe:
        write_mnist_like(root, "MNIST")
        return [f"data.data_dir={root}", "data.val_size=4", *small]
    if "data: cifar10" in recipe:
        write_cifar(root, CIFAR10DataModule)
        return [f"data.data_dir={root}", "data.val_size=4", *small]
    if "data: imagefolder" in recipe:  # 3 classes instead of ImageNet's 1000
        write_tree(root / "images")
        return [
            f"data.data_dir={root / 'images'}",
            "data.num_classes=3",
            "data.val_size=3",
            "data.num_workers=0",
            *small,
        ]
    return []


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_trains_one_batch(
    train_config, experiment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each recipe composes, builds and runs a fast_dev_run batch on files in its data set's own format."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    recipe = (CONFIG_DIR / "experiment" / f"{experiment}.yaml").read_text()
    parent = re.search(r"^  - (\w+_cifar10)$", recipe, flags=re.MULTILINE)  # a recipe built on another one
    if parent:
        recipe += (CONFIG_DIR / "experiment" / f"{parent.group(1)}.yaml").read_text()
    cfg = train_config(f"experiment={experiment}", *_data_for(recipe, tmp_path), "debug=fdr")
    summary = train(cfg)
    assert all(math.isfinite(value) for key, value in summary.items() if key.startswith("test/"))


def test_eval_config_requires_a_checkpoint(tmp_path: Path) -> None:
    cfg = compose_config("eval", tmp_path)
    assert OmegaConf.is_missing(cfg, "ckpt_path")


def test_wrong_type_is_named_with_its_key(train_config) -> None:
    cfg = train_config("trainer.max_epochs=abc")
    with pytest.raises(UserError, match=r"trainer.max_epochs: expected int or None, got 'abc' \(str\)"):
        instantiate(cfg.trainer, "trainer")


def test_unknown_argument_lists_the_accepted_ones(train_config) -> None:
    cfg = train_config("+model.depth=3")
    with pytest.raises(UserError, match=r"model.depth: not an argument of .*lenet5.*accepted: num_classes, in_ch"):
        instantiate(cfg.model, "model")
    with pytest.raises(UserError, match=r"data.batchsize: not an argument of .*accepted: num_classes, batch_size"):
        build(train_config("+data.batchsize=3"))


def test_errors_raised_by_the_target_name_the_key(train_config) -> None:
    with pytest.raises(UserError, match=r"^data: batch_size must be a positive integer, got 0$"):
        build(train_config("data.batch_size=0"))
    with pytest.raises(UserError, match=r"^optimizer: Invalid learning rate: -0.1$"):
        build(train_config("optimizer.lr=-0.1"))


def test_model_that_cannot_take_the_images_fails_before_training(train_config) -> None:
    with pytest.raises(UserError, match=r"cannot take the data's 1x28x28 images: LeNet-5 takes images of shape"):
        build(train_config("data.image_size=28"))
    with pytest.raises(
        UserError, match=r"the model has 5 outputs but the data has 10 classes; set model.num_classes=10"
    ):
        build(train_config("model.num_classes=5"))


def test_type_check_accepts_what_the_hints_allow() -> None:
    def target(lr: float, steps: int | None = None, mode: str = "a", flags: list[int] | None = None) -> None:
        del lr, steps, mode, flags

    check_arguments(target, OmegaConf.create({"lr": 1, "steps": None, "mode": "b", "flags": [1, 2]}), "x")
    with pytest.raises(UserError, match=r"x.lr: expected float, got True \(bool\)"):
        check_arguments(target, OmegaConf.create({"lr": True}), "x")
    with pytest.raises(UserError, match=r"x.steps: expected int or None, got 2.5 \(float\)"):
        check_arguments(target, OmegaConf.create({"steps": 2.5}), "x")
    check_arguments(torch.optim.SGD, OmegaConf.create({"lr": 0.1, "momentum": 0.9}), "optimizer")


class _Base:
    def __init__(self, size: int, *, scale: float = 1.0) -> None:
        del size, scale


class _Passes(_Base):
    def __init__(self, mode: str = "a", size: int = 3, **kwargs: object) -> None:
        super().__init__(size, **kwargs)


class _PassesOn(_Passes):
    def __init__(self, depth: int = 1, **kwargs: object) -> None:
        super().__init__(**kwargs)


def test_arguments_passed_on_with_kwargs_are_checked_against_the_base_classes() -> None:
    check_arguments(_PassesOn, OmegaConf.create({"depth": 2, "mode": "b", "size": 4, "scale": 0.5}), "x")
    with pytest.raises(UserError, match=r"x.scale: expected float, got 'big' \(str\)"):
        check_arguments(_PassesOn, OmegaConf.create({"scale": "big"}), "x")
    with pytest.raises(UserError, match=r"x.sise: not an argument of .*_PassesOn; accepted: depth, mode, size, scale$"):
        check_arguments(_PassesOn, OmegaConf.create({"sise": 4}), "x")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["model=lenett5"],
            r"unknown model 'lenett5'; did you mean lenet5\? accepted: alexnet, .*, lenet5, lenet5_paper, ",
        ),
        (["data=svhn"], r"unknown data 'svhn'; accepted: adding, cifar10, cifar100, digits, digits_attributes, fake, "),
        (
            ["-m", "optimizer=sgd,adamm"],
            r"unknown optimizer 'adamm'; did you mean adam, adamw\? accepted: adagrad, adam, adamw, lbfgs, rmsprop, ",
        ),
        (["experiment=nope"], r"unknown experiment 'nope'; accepted: .*, lenet5_digits, "),
        (["optimizer.lrr=0.1"], r"unknown optimizer setting 'lrr'; did you mean lr\? accepted: lr, momentum, nesterov"),
        (["optimizer=adam", "optimizer.momentum=0.9"], r"unknown optimizer setting 'momentum'; accepted: lr, betas"),
        (
            ["sed=1"],
            r"unknown setting 'sed'; did you mean seed.* accepted: task_name, seed, test, lr_find, optimized_metric, "
            r"channels_last, compile, compile_mode, ckpt_path, data",
        ),
        (["trainer.max_epoch=3"], r"unknown trainer setting 'max_epoch'; did you mean max_epochs\? accepted"),
    ],
)
def test_unknown_group_options_and_keys_are_caught_before_hydra_runs(args: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        check_overrides(args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optimizer.lr=["], r"^no viable alternative at input '\['"),
        (["+seed=3"], r"^Could not append to config. An item is already at 'seed'. Either remove \+ prefix"),
    ],
)
def test_other_composition_errors_are_hydras_message_in_one_line(args: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        check_overrides(args)
    assert "\n" not in str(caught.value)


def test_known_options_and_keys_pass() -> None:
    check_overrides(["model=lenet5", "optimizer=adam", "scheduler=none", "~logger", "optimizer.lr=0.1", "-m"])
    check_overrides(["debug=fdr", "trainer.fast_dev_run=2", "+trainer.limit_val_batches=2", "seed=3"])
    check_overrides(["ckpt_path=x.ckpt", "trainer.accelerator=cpu"], config_name="eval")
    # Hydra's ++ sets a key or adds it where the config has none
    check_overrides(["++trainer.limit_train_batches=2", "++trainer.max_epochs=1"])


@pytest.mark.parametrize(
    ("args", "given"),
    [(["-m", "-i"], "--multirun and --info"), (["seed=1", "--cfg", "job", "-r"], "--run and --cfg")],
)
def test_two_of_hydras_modes_are_refused_and_flags_with_values_are_not_modes(args: list[str], given: str) -> None:
    with pytest.raises(UserError, match=f"^{given} cannot be used together; give one of --run, --multirun, "):
        check_overrides(args)
    check_overrides(["-cn", "train", "-cp", "configs", "-p", "model", "seed=3"])  # not -c n, -c p: not --cfg


def test_an_existing_run_directory_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    (tmp_path / ".hydra").mkdir()
    with pytest.raises(UserError, match=r"already holds a run \(\.hydra\); nothing was changed"):
        claim_directory(tmp_path, "hydra.run.dir")
    assert [path.name for path in tmp_path.iterdir()] == [".hydra"]


def documented_train_commands() -> list[str]:
    """Every ``python scripts/train.py ...`` line in the README and docs/, without its comment."""
    commands = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in page.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("python scripts/train.py"):
                commands.append(line)
    return commands


@pytest.mark.parametrize("command", documented_train_commands())
def test_documented_train_commands_compose_and_their_data_settings_are_accepted(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = command.split()[2:]
    if "--cfg" in words:
        words = words[: words.index("--cfg")]
    # a sweep (-m a=1,2) is checked with the first value of each list
    args = [arg.split(",")[0] if "-m" in words else arg for arg in words if not arg.startswith("-")]
    check_overrides(args, "train")
    cfg = compose_config("train", tmp_path, [arg for arg in args if not arg.startswith("hydra.")])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input.txt").write_text("a text for the character models to read\n" * 2000)
    instantiate(cfg.data, "data")  # the image constructors check their settings without reading any files
