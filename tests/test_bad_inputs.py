"""Every bad input tried on the scripts, each with the one line the user sees and the exit status; the table in
docs/reliability.md shows these same lines, checked row by row against what the scripts print.

The scripts' own entry point, ``training.cli.run``, runs in this process (a process per row would spend most of
its time importing torch); test_cli.py and the signal tests in test_reliability.py run the scripts as processes.
"""

from __future__ import annotations

import errno
import importlib.metadata
import os
import pathlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image
from test_guards import DIVERGING
from test_images import write_decompression_bomb
from test_reliability import fill_disk_after_step
from test_safety import REFUSAL, write_malicious_checkpoint
from test_untrusted import load_chain, write_damaged, write_nan, write_with_config

import models
from conftest import ROOT
from test_imagefolder import SIZE, VAL, write_tree
from training.cli import CLAIM, run
from training.config import UserError
from training.export import export
from training.gradcheck import gradcheck
from training.inference import predict
from training.tasks import evaluate, train

DOCS = ROOT / "docs" / "reliability.md"
FAST = ["trainer.accelerator=cpu", "callbacks.progress_bar=null", "callbacks.model_summary=null"]
QUICK = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=2", "test=false"]


Prepare = Callable[[Path, Path, pytest.MonkeyPatch], None]  # (directory, lenet5 checkpoint, monkeypatch)


@dataclass
class Row:
    """A bad input: its description (the docs table's first column), the script's arguments (``<dir>`` stands for a
    fresh directory, ``<checkpoint>`` for a lenet5 training checkpoint), the start of the line the user must see,
    and the exit status. ``prepare`` writes the files the arguments name, or breaks something (a full disk)."""

    what: str
    args: list[str]
    message: str
    code: int = 2
    script: str = "train.py"
    prepare: Prepare | None = None
    extra: list[str] = field(default_factory=list)  # arguments that make the run fast, left out of the docs
    when: str = ""  # the circumstance that ``prepare`` simulates, for the docs


def _write(name: str, content: bytes) -> Prepare:
    return lambda directory, checkpoint, monkeypatch: (directory / name).write_bytes(content)


def _state_dict(name: str, **kwargs: int) -> Prepare:
    def prepare(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        torch.save(models.create_model(name, **kwargs).state_dict(), directory / f"{name}.pt")

    return prepare


def _truncated_checkpoint(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = checkpoint.read_bytes()
    (directory / "truncated.ckpt").write_bytes(data[: len(data) // 2])


def _malicious(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_malicious_checkpoint(directory / "evil.ckpt", directory / "marker")


def _code_in_the_stored_config(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_with_config(
        checkpoint, directory / "evil.ckpt", lambda run: run.update(data=load_chain(directory / "marker"))
    )


def _damaged(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_damaged(checkpoint, directory / "damaged.ckpt")


def _nan_weights(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_nan(checkpoint, directory / "nan.ckpt")


def _without(package: str) -> Prepare:
    """A Python environment in which ``package`` (a distribution name) is not installed."""

    def prepare(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        installed = importlib.metadata.distribution

        def distribution(name: str) -> importlib.metadata.Distribution:
            if name == package:
                raise importlib.metadata.PackageNotFoundError(name)
            return installed(name)

        monkeypatch.setattr(importlib.metadata, "distribution", distribution)

    return prepare


def _checkpoint_and_a_link_to_it(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (directory / "last.ckpt").write_bytes(checkpoint.read_bytes())
    (directory / "link.ckpt").symlink_to(directory / "last.ckpt")


def _image_folder_with_a_broken_image(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tree(directory / "images")
    (directory / "images" / "train" / "ant" / "ant_broken.png").write_text("not an image\n")


def _decompression_bomb(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_decompression_bomb(directory / "bomb.png")


def _float_image(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(np.zeros((8, 8), np.float32)).save(directory / "float.tiff")


def _good_and_bad_images(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = directory / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("L", (8, 8)).save(folder / name)
    (folder / "c_text.png").write_text("not an image\n")
    write_decompression_bomb(folder / "d_bomb.png")
    _float_image(folder, checkpoint, monkeypatch)


def _image_folder_with_a_decompression_bomb(directory: Path, checkpoint: Path, monkeypatch) -> None:
    write_tree(directory / "images")
    write_decompression_bomb(directory / "images" / "train" / "ant" / "ant_bomb.png")


def _file_in_the_way(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (directory / "a_file").write_text("")


def _used_run_dir(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (directory / "old_run" / ".hydra").mkdir(parents=True)


def _disk_fills_after_the_first_epoch(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fill_disk_after_step(monkeypatch, 2)


def _out_of_memory(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forward = models.lenet.LeNet5.forward

    def forward_out_of_memory(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # the training steps, not the shape check before them
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return forward(self, x)

    monkeypatch.setattr(models.lenet.LeNet5, "forward", forward_out_of_memory)


def _claimed_run_dir(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (directory / "taken").mkdir()
    (directory / "taken" / CLAIM).write_text("pid 1: python scripts/train.py\n")  # a run starting in it


def _earlier_sweep(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (directory / "sweep" / "0" / ".hydra").mkdir(parents=True)
    (directory / "sweep" / "multirun.yaml").write_text("earlier: sweep\n")


def _earlier_records(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (directory / "earlier").mkdir()
    for name in ("config.yaml", "metrics.json"):
        (directory / "earlier" / name).write_text("{}\n")


def _read_only_at_the_end(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Creating metrics.json (or its temporary file) fails as on a read-only file system."""
    open_file, write_text = os.open, pathlib.Path.write_text

    def refuse(path: str | Path) -> None:
        if Path(path).name.startswith((".metrics.json", "metrics.json")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(os, "open", lambda path, *args, **kwargs: refuse(path) or open_file(path, *args, **kwargs))
    monkeypatch.setattr(
        pathlib.Path, "write_text", lambda path, *args, **kwargs: refuse(path) or write_text(path, *args, **kwargs)
    )


def _mid_epoch_checkpoint(directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """<dir>/stopped/checkpoints/last.ckpt, saved at step 2 of a 4-step epoch (saved every step, the disk full
    from step 3 on)."""
    from conftest import compose_config

    overrides = [*FAST, *QUICK[:1], "+trainer.limit_train_batches=4", "test=false"]
    with monkeypatch.context() as patch, pytest.raises(UserError, match="could not write checkpoint"):
        fill_disk_after_step(patch, 2)
        train(compose_config("train", directory / "stopped", [*overrides, LAST_EVERY_STEP]))
    GlobalHydra.instance().clear()


LAST_EVERY_STEP = "callbacks.model_checkpoint.last_every_n_train_steps=1"
EARLY_STOPPING = "+callbacks.early_stopping._target_=pytorch_lightning.callbacks.EarlyStopping"
IMAGES = [
    "data=imagefolder", "data.data_dir=<dir>/images", "data.num_classes=3", f"data.val_size={VAL}",
    f"data.image_size={SIZE}", "data.batch_size=4", "data.num_workers=0", "model=resnet20",
]  # fmt: skip

ROWS = [
    Row("Unknown model", ["model=lenett5"], "error: unknown model 'lenett5'; did you mean lenet5? accepted: alexnet, "),
    Row("Unknown data set", ["data=svhn"], "error: unknown data 'svhn'; accepted: adding, cifar10, cifar100, digits, "),
    Row("Unknown setting", ["optimizer.lrr=0.1"], "error: unknown optimizer setting 'lrr'; did you mean lr? "),
    Row(
        "Two of Hydra's modes at once",
        ["-m", "seed=1,2", "--cfg", "job"],
        "error: --multirun and --cfg cannot be used together; give one of --run, --multirun, --cfg, --info, ",
    ),
    Row(
        "Wrong type in an override",
        ["trainer.max_epochs=abc"],
        "error: trainer.max_epochs: expected int or None, got 'abc' (str)",
    ),
    Row("Negative learning rate", ["optimizer.lr=-1"], "error: optimizer: Invalid learning rate: -1"),
    Row("Batch size 0", ["data.batch_size=0"], "error: data: batch_size must be a positive integer, got 0"),
    Row("Seed that is not a number", ["seed=abc"], "error: seed: expected an integer from 0 to 4294967295, or null, "),
    Row(
        "Missing data directory",
        ["data=mnist", "data.data_dir=<dir>/nowhere"],
        "error: data: MNIST not found (or "
        "corrupted) in '<dir>/nowhere': expected <dir>/nowhere/MNIST/raw/train-images-idx3-ubyte",
    ),
    Row(
        "Corrupted image",
        IMAGES,
        "error: cannot read image <dir>/images/train/ant/ant_broken.png: ",
        prepare=_image_folder_with_a_broken_image,
        extra=QUICK,
    ),
    Row(
        "Empty text file for the language model",
        ["experiment=char_lstm", "data.path=<dir>/empty.txt"],
        "error: data: <dir>/empty.txt is empty; ",
        prepare=_write("empty.txt", b""),
    ),
    Row(
        "Input too small for the model",
        ["data.image_size=28"],
        "error: the model cannot take the data's 1x28x28 "
        "images: LeNet-5 takes images of shape (N, 1, 32, 32), got (1, 1, 28, 28)",
    ),
    Row(
        "Model with fewer outputs than classes",
        ["model.num_classes=5"],
        "error: the model has 5 outputs but the data has 10 classes; set model.num_classes=10",
    ),
    Row(
        "Weights of another architecture",
        ["model.pretrained=<dir>/resnet20.pt"],
        "error: model.pretrained: <dir>/resnet20.pt does not fit lenet5 (LeNet5); nothing was loaded.",
        prepare=_state_dict("resnet20"),
    ),
    Row(
        "Class-count mismatch of pretrained weights",
        ["model.pretrained=<dir>/lenet5.pt"],
        "error: model.pretrained: "
        "<dir>/lenet5.pt has a classifier for 5 classes, but the model has 10 (data.num_classes=10); ",
        prepare=_state_dict("lenet5", num_classes=5),
    ),
    Row(
        "Truncated checkpoint (pretrained weights)",
        ["model.pretrained=<dir>/truncated.ckpt"],
        "error: model.pretrained: <dir>/truncated.ckpt is truncated or damaged",
        prepare=_truncated_checkpoint,
    ),
    Row(
        "Truncated checkpoint (resume)",
        ["ckpt_path=<dir>/truncated.ckpt"],
        "error: <dir>/truncated.ckpt is truncated or damaged",
        prepare=_truncated_checkpoint,
    ),
    Row(
        "Truncated checkpoint (evaluation)",
        ["ckpt_path=<dir>/truncated.ckpt"],
        "error: <dir>/truncated.ckpt is truncated or damaged",
        script="eval.py",
        prepare=_truncated_checkpoint,
    ),
    Row(
        "Checkpoint of another architecture (resume)",
        ["model=resnet20", "ckpt_path=<checkpoint>"],
        "error: ckpt_path: <checkpoint> was trained with model.name='lenet5', this run has model.name='resnet20'; ",
    ),
    Row(
        "Missing checkpoint (resume)",
        ["ckpt_path=<dir>/missing.ckpt"],
        "error: checkpoint not found: <dir>/missing.ckpt",
    ),
    Row(
        "No earlier run to resume",
        ["ckpt_path=last"],
        "error: ckpt_path=last: no earlier run with a last checkpoint under logs/train/runs",
    ),
    Row(
        "Weights that are not a training checkpoint (evaluation)",
        ["ckpt_path=<dir>/lenet5.pt"],
        "error: <dir>/lenet5.pt is not a classicnets training checkpoint",
        script="eval.py",
        prepare=_state_dict("lenet5"),
    ),
    Row(
        "Missing checkpoint (evaluation)",
        ["ckpt_path=<dir>/missing.ckpt"],
        "error: checkpoint not found: <dir>/missing.ckpt",
        script="eval.py",
    ),
    Row(
        "Malicious pickle (pretrained weights)",
        ["model.pretrained=<dir>/evil.ckpt"],
        f"error: model.pretrained: <dir>/evil.ckpt {REFUSAL}",
        prepare=_malicious,
    ),
    Row(
        "Malicious pickle (resume)",
        ["ckpt_path=<dir>/evil.ckpt"],
        f"error: <dir>/evil.ckpt {REFUSAL}",
        prepare=_malicious,
    ),
    Row(
        "Malicious pickle (evaluation)",
        ["ckpt_path=<dir>/evil.ckpt"],
        f"error: <dir>/evil.ckpt {REFUSAL}",
        script="eval.py",
        prepare=_malicious,
    ),
    Row("NaN loss", DIVERGING, "error: training diverged: a non-finite ", extra=["test=false"]),
    Row(
        "Unwritable output directory",
        ["hydra.run.dir=<dir>/a_file/run"],
        "error: cannot write the run's "
        "directory <dir>/a_file/run: <dir>/a_file is a file, not a directory; choose another hydra.run.dir or "
        "paths.log_dir",
        prepare=_file_in_the_way,
    ),
    Row(
        "Run directory of an earlier run",
        ["hydra.run.dir=<dir>/old_run"],
        "error: hydra.run.dir=<dir>/old_run already holds a run (.hydra); nothing was changed.",
        prepare=_used_run_dir,
    ),
    Row(
        "Disk full while saving a checkpoint",
        ["trainer.max_epochs=2"],
        "error: could not write checkpoint "
        "<dir>/run/checkpoints/last.ckpt: No space left on device; the previous checkpoint is kept",
        prepare=_disk_fills_after_the_first_epoch,
        when="on a disk that fills up in the second epoch",
        extra=[*QUICK[1:], "callbacks.model_checkpoint.monitor=epoch"],
    ),
    Row(
        "CUDA out of memory",
        [],
        "error: out of memory on cpu with data.batch_size=32: choose a smaller batch, e.g. data.batch_size=16, ",
        prepare=_out_of_memory,
        when="with a batch too big for the GPU",
        extra=QUICK,
    ),
    Row(
        "Decompression bomb (prediction)",
        ["ckpt_path=<checkpoint>", "inputs=<dir>/bomb.png"],
        "error: inputs: cannot read <dir>/bomb.png: DecompressionBombError: Image size (900000000 pixels) exceeds ",
        script="predict.py",
        prepare=_decompression_bomb,
    ),
    Row(
        "Float image (prediction)",
        ["ckpt_path=<checkpoint>", "inputs=<dir>/float.tiff"],
        "error: inputs: cannot read <dir>/float.tiff: 32-bit floating-point pixels (PIL mode F) have no fixed range ",
        script="predict.py",
        prepare=_float_image,
    ),
    Row(
        "Unreadable images among good ones (prediction)",
        ["ckpt_path=<checkpoint>", "inputs=<dir>/photos"],
        "error: inputs: 3 of 5 images could not be read (each is named above); the other 2 are predicted in "
        "<dir>/run/predictions.json",
        script="predict.py",
        prepare=_good_and_bad_images,
    ),
    Row(
        "Decompression bomb in an image folder",
        IMAGES,
        "error: cannot read image <dir>/images/train/ant/ant_bomb.png: DecompressionBombError: Image size ",
        prepare=_image_folder_with_a_decompression_bomb,
        extra=QUICK,
    ),
    Row(
        "Checkpoint whose stored config runs code (evaluation)",
        ["ckpt_path=<dir>/evil.ckpt"],
        "error: <dir>/evil.ckpt: its stored run config names _target_ 'torch.load' at data; a checkpoint may rebuild "
        "only the project's own classes",
        script="eval.py",
        prepare=_code_in_the_stored_config,
    ),
    Row(
        "Damaged checkpoint (evaluation)",
        ["ckpt_path=<dir>/damaged.ckpt"],
        "error: <dir>/damaged.ckpt is damaged: its part archive/data/",
        script="eval.py",
        prepare=_damaged,
    ),
    Row(
        "Damaged checkpoint (resume)",
        ["ckpt_path=<dir>/damaged.ckpt"],
        "error: <dir>/damaged.ckpt is damaged: its part archive/data/",
        prepare=_damaged,
    ),
    Row(
        "Checkpoint with NaN weights (evaluation)",
        ["ckpt_path=<dir>/nan.ckpt"],
        "error: <dir>/nan.ckpt is damaged: its weight net.features.c1.weight holds NaN; nothing was loaded from it",
        script="eval.py",
        prepare=_nan_weights,
    ),
    Row(
        "Export over its own checkpoint",
        ["ckpt_path=<dir>/last.ckpt", "format=state_dict", "out=<dir>/link.ckpt", "overwrite=true"],
        "error: out: <dir>/link.ckpt is the checkpoint being exported, <dir>/last.ckpt; nothing was written",
        script="export.py",
        prepare=_checkpoint_and_a_link_to_it,
    ),
    Row(
        "Run directory another run is starting in",
        ["hydra.run.dir=<dir>/taken"],
        "error: hydra.run.dir=<dir>/taken already holds a run (started just now); nothing was changed.",
        prepare=_claimed_run_dir,
    ),
    Row(
        "Sweep directory of an earlier sweep",
        ["seed=1,2", "hydra.sweep.dir=<dir>/sweep", "-m"],
        "error: hydra.sweep.dir=<dir>/sweep already holds a run (0, multirun.yaml); nothing was changed.",
        prepare=_earlier_sweep,
    ),
    Row(
        "Output directory of an earlier run",
        ["paths.output_dir=<dir>/earlier"],
        "error: paths.output_dir=<dir>/earlier already holds a run (config.yaml, metrics.json); nothing was changed.",
        prepare=_earlier_records,
    ),
    Row(
        "Evaluation on another split",
        ["ckpt_path=<checkpoint>", "+data.split_seed=1"],
        "error: data.split_seed=1 would change which images are scored (the checkpoint was trained with 0): ",
        script="eval.py",
    ),
    Row(
        "Run directory that turns read-only",
        ["trainer.max_epochs=1"],
        "error: could not write <dir>/run/metrics.json: Read-only file system; the checkpoints are kept, the metrics "
        "printed above",
        prepare=_read_only_at_the_end,
        when="on a file system that turns read-only before the run ends",
        extra=QUICK[1:],
    ),
    Row(
        "Checkpoint monitoring a metric that is not logged",
        ["callbacks.model_checkpoint.monitor=val/los"],
        "error: callbacks.model_checkpoint.monitor: Classifier does not log 'val/los'; did you mean val/loss? "
        "accepted: val/loss, val/acc, ",
    ),
    Row(
        "Early stopping on a metric that is not logged",
        [EARLY_STOPPING, "+callbacks.early_stopping.monitor=val/acc_bst"],
        "error: callbacks.early_stopping.monitor: Classifier does not log 'val/acc_bst'; did you mean val/acc_best? ",
    ),
    Row("Learning rate that is not a number", ["optimizer.lr=nan"], "error: optimizer.lr: expected a finite number, "),
    Row(
        "Infinite Adam beta",
        ["optimizer=adam", "optimizer.betas=[0.9,inf]"],
        "error: optimizer.betas: expected finite numbers, got [0.9, inf]",
    ),
    Row(
        "Scheduler step size below 1",
        ["scheduler.step_size=-2"],
        "error: scheduler.step_size: expected 1 or more, got -2",
    ),
    Row(
        "No epoch to train",
        ["trainer.max_epochs=0"],
        "error: trainer.max_epochs: expected 1 or more (or -1 or null), got 0; 0 trains nothing",
    ),
    Row(
        "No step to train",
        ["+trainer.max_steps=0"],
        "error: trainer.max_steps: expected 1 or more (or -1 or null), got 0; 0 trains nothing",
    ),
    Row(
        "No training batch",
        ["+trainer.limit_train_batches=0"],
        "error: trainer.limit_train_batches: expected a positive number (a fraction or a count), got 0",
    ),
    Row(
        "Resuming a run that has trained all its epochs",
        ["ckpt_path=<checkpoint>", "trainer.max_epochs=1"],
        "error: ckpt_path: <checkpoint> has trained 1 epoch, and trainer.max_epochs=1 leaves nothing to train; ",
    ),
    Row(
        "Resuming mid-epoch with another batch size",
        ["ckpt_path=<dir>/stopped/checkpoints/last.ckpt", "data.batch_size=16"],
        "error: ckpt_path: <dir>/stopped/checkpoints/last.ckpt was saved in the middle of epoch 0 with "
        "data.batch_size=32, this run has data.batch_size=16; resume with data.batch_size=32",
        prepare=_mid_epoch_checkpoint,
    ),
    Row(
        "Switch that is neither true nor false",
        ["test=no"],
        "error: test: expected true or false, got 'no'",
    ),
    Row(
        "Wrong type for an argument of a callback's base class",
        ["callbacks.model_checkpoint.save_last=maybe"],
        "error: callbacks.model_checkpoint.save_last: expected ",
    ),
    Row(
        "Data set that does not fit the model's config",
        ["data=adding"],
        "error: model.num_classes: Interpolation key 'data.num_classes' not found",
    ),
    Row(
        "Evaluation without a checkpoint",
        [],
        "error: ckpt_path is required: give it on the command line, ckpt_path=...",
        script="eval.py",
    ),
    Row(
        "Optuna search without the sweep extra",
        ["hparams_search=lenet5_digits_random"],
        "error: hparams_search=lenet5_digits_random needs hydra-optuna-sweeper, not installed here; install the "
        "'sweep' extra: pip install -c constraints.txt -e '.[sweep]'",
        prepare=_without("hydra-optuna-sweeper"),
        when="without the sweep extra installed",
    ),
    Row(
        "SLURM launcher without the sweep extra",
        ["-m", "hydra/launcher=slurm", "seed=1,2"],
        "error: hydra/launcher=slurm needs hydra-submitit-launcher, not installed here; install the 'sweep' extra: "
        "pip install -c constraints.txt -e '.[sweep]'",
        prepare=_without("hydra-submitit-launcher"),
        when="without the sweep extra installed",
    ),
    Row(
        "ONNX export without the export extra",
        ["ckpt_path=<checkpoint>", "format=onnx", "out=<dir>/net.onnx"],
        "error: format=onnx needs onnxscript, not installed here; install the 'export' extra: "
        "pip install -c constraints.txt -e '.[export]'",
        script="export.py",
        prepare=_without("onnxscript"),
        when="without the export extra installed",
    ),
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lenet5 training checkpoint, for the rows about resuming and about broken files."""
    from conftest import compose_config

    run_dir = tmp_path_factory.mktemp("checkpoint") / "run"
    train(compose_config("train", run_dir, [*FAST, *QUICK]))
    GlobalHydra.instance().clear()
    return run_dir / "checkpoints" / "last.ckpt"


def run_script_in_process(
    script: str, args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> tuple[int | None, str]:
    """``scripts/<script> args`` through the scripts' own entry point: the exit status and what went to stderr."""
    scripts = {
        "train.py": (train, "train"), "eval.py": (evaluate, "eval"), "predict.py": (predict, "predict"),
        "export.py": (export, "export"), "gradcheck.py": (gradcheck, "gradcheck"),
    }  # fmt: skip
    task, config_name = scripts[script]
    monkeypatch.setattr(sys, "argv", [f"scripts/{script}", *args])
    capsys.readouterr()
    try:
        run(task, config_name)
        code: int | None = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        GlobalHydra.instance().clear()
    return code, capsys.readouterr().err


def seen(row: Row, directory: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> tuple[int, str]:
    """Run ``row`` in ``directory``: its exit status and its one ``error:`` line, with paths as the table shows
    them."""
    monkeypatch.chdir(directory)
    if row.prepare is not None:
        row.prepare(directory, checkpoint, monkeypatch)
    args = [arg.replace("<dir>", str(directory)).replace("<checkpoint>", str(checkpoint)) for arg in row.args]
    fixed = [] if any(arg.startswith("hydra.run.dir=") for arg in args) else [f"hydra.run.dir={directory}/run"]
    extra = FAST if row.script == "train.py" else []
    code, stderr = run_script_in_process(row.script, [*extra, *row.extra, *fixed, *args], monkeypatch, capsys)
    lines = [line for line in stderr.splitlines() if line.startswith(("error:", "stopped by"))]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return code, lines[0].replace(str(checkpoint), "<checkpoint>").replace(str(directory), "<dir>")


@pytest.mark.parametrize("row", ROWS, ids=[row.what for row in ROWS])
def test_a_bad_input_ends_in_one_clear_line(
    row: Row, tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, line = seen(row, tmp_path, checkpoint, monkeypatch, capsys)
    assert code == row.code, line
    assert line.startswith(row.message), line
    assert not (tmp_path / "marker").exists()  # a malicious file's code never ran
    documented = documented_lines()
    cell = documented.get(row.what)
    expected_row = f"| {row.what} | {command(row)} | {table_cell(line)} | {row.code} |"
    assert cell is not None, f"docs/reliability.md lacks the row\n{expected_row}"
    shown, exit_code = cell
    assert exit_code == row.code and (line == shown or (shown.endswith("…") and line.startswith(shown[:-1]))), (
        f"docs/reliability.md shows another line than the script now prints; the row should read\n{expected_row}"
    )


def command(row: Row) -> str:
    words = [f"python scripts/{row.script}", *row.args]
    return "``" + " ".join(words) + "``" + (f" {row.when}" if row.when else "")


def table_cell(line: str) -> str:
    """A line of the scripts as a code span in a table cell (long lines cut at 220 characters)."""
    shown = line if len(line) <= 220 else line[:219] + "…"
    return "``" + shown.replace("|", "\\|") + "``"


def documented_lines() -> dict[str, tuple[str, int]]:
    """The rows of the table in docs/reliability.md: the shown line and exit status of each bad input."""
    rows = {}
    for line in DOCS.read_text().splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 4 and cells[2].startswith("``") and cells[3].isdigit():
            rows[cells[0]] = (cells[2][2:-2].replace("\\|", "|"), int(cells[3]))
    return rows


def test_every_row_of_the_docs_table_is_tested() -> None:
    assert sorted(documented_lines()) == sorted(row.what for row in ROWS)
    assert len(ROWS) >= 15
