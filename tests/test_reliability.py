"""Reliability: crash-safe checkpoint files, a last.ckpt that is always the newest state, a clean stop on SIGTERM
and SIGINT, reproducible runs, and one clear line for a device out of memory (docs/reliability.md)."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import ROOT, compose_config, run_script
from models.lenet import LeNet5
from training import checkpoint_io
from training.checkpoint_io import (
    AtomicCheckpointIO,
    CheckpointWriteError,
    RecordWriteError,
    atomic_link,
    atomic_save,
    write_record,
)
from training.checkpointing import ModelCheckpoint
from training.config import UserError
from training.interrupt import StopOnSignal, hydra_override, resume_command
from training.tasks import load_checkpoint, train

FAST = ["trainer.accelerator=cpu", "callbacks.progress_bar=null", "callbacks.model_summary=null"]


class FullDisk(io.FileIO):
    """A file on a disk with ``room`` bytes free: the write that passes it stores what fits, then fails as a full
    disk does (or raises ``error``)."""

    def __init__(self, descriptor: int, room: int, error: BaseException) -> None:
        super().__init__(descriptor, "wb")
        self.room = room
        self.error = error

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            super().write(bytes(data[: self.room]))
            self.room = 0
            raise self.error
        self.room -= len(data)
        return super().write(data)


def fill_disk(monkeypatch: pytest.MonkeyPatch, room: int, error: BaseException | None = None) -> None:
    """Make every checkpoint write from now on run out of space after ``room`` bytes."""
    error = error or OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(
        checkpoint_io, "open", lambda descriptor, mode: FullDisk(descriptor, room, error), raising=False
    )


def fill_disk_after_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Make the trainer's checkpoint saves run out of space from the first save of a step after ``step`` on."""
    save = AtomicCheckpointIO.save_checkpoint

    def save_until_full(self: AtomicCheckpointIO, checkpoint: dict, path: str, **options: object) -> None:
        if checkpoint["global_step"] > step:
            fill_disk(monkeypatch, room=4096)
        save(self, checkpoint, path, **options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", save_until_full)


def checkpoint_of(step: int) -> dict:
    return {"global_step": step, "state_dict": {"w": torch.full((50_000,), float(step))}}


def leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(".tmp"))


def test_a_save_is_a_complete_regular_file_with_the_usual_permissions(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    atomic_save(checkpoint_of(1), path)
    atomic_save(checkpoint_of(2), path)
    assert path.is_file() and not path.is_symlink()
    assert torch.load(path, weights_only=True)["global_step"] == 2
    (tmp_path / "plain").write_bytes(b"")
    assert path.stat().st_mode == (tmp_path / "plain").stat().st_mode
    assert leftovers(path.parent) == []


def test_a_disk_full_half_way_through_a_save_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.ckpt"
    atomic_save(checkpoint_of(1), path)
    before = path.read_bytes()
    fill_disk(monkeypatch, room=len(before) // 2)  # the new file stops half-way
    with pytest.raises(CheckpointWriteError) as error:
        atomic_save(checkpoint_of(2), path)
    assert str(error.value) == (
        f"could not write checkpoint {path}: No space left on device; the previous checkpoint is kept"
    )
    assert isinstance(error.value, UserError)  # the scripts end in this one line
    assert path.read_bytes() == before and torch.load(path, weights_only=True)["global_step"] == 1
    assert leftovers(tmp_path) == []


def test_an_interrupted_save_keeps_the_previous_checkpoint_and_goes_on_interrupting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.ckpt"
    atomic_save(checkpoint_of(1), path)
    fill_disk(monkeypatch, room=1000, error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        atomic_save(checkpoint_of(2), path)
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert leftovers(tmp_path) == []


def test_a_save_where_a_file_is_in_the_way_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("")
    path = blocker / "last.ckpt"
    with pytest.raises(CheckpointWriteError) as error:
        atomic_save(checkpoint_of(1), path)
    assert str(error.value) == (
        f"could not write checkpoint {path}: {blocker} is not a directory; earlier checkpoints are untouched"
    )


def test_a_save_killed_mid_write_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    """SIGKILL while the new file is being written: the old one is untouched (a stray .tmp file may remain)."""
    path = tmp_path / "last.ckpt"
    child = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from training.checkpoint_io import atomic_save

class Slow:  # pickled while the temporary file is open: the process is killed in the middle of the save
    def __reduce__(self):
        time.sleep(120)
        return int, (0,)

atomic_save({{"global_step": 1}}, {str(path)!r})
atomic_save({{"global_step": 2, "slow": Slow()}}, {str(path)!r})
"""
    process = subprocess.Popen([sys.executable, "-c", child])
    try:
        for _ in range(600):
            if leftovers(tmp_path):
                break
            time.sleep(0.1)
        assert leftovers(tmp_path), "the second save never started"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert torch.load(path, weights_only=True) == {"global_step": 1}


def test_the_trainer_config_writes_checkpoints_through_the_atomic_io(train_config) -> None:
    from training.config import instantiate

    trainer = instantiate(train_config().trainer, "trainer", logger=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def held_writes(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Hold every checkpoint write of the background thread until the returned event is set."""
    release, write = threading.Event(), checkpoint_io._atomic_write

    def held(path: Path, contents: object) -> None:
        assert release.wait(timeout=60), "the writes were never released"
        write(path, contents)

    monkeypatch.setattr(checkpoint_io, "_atomic_write", held)
    return release


def test_the_trainer_s_saves_are_written_in_the_background_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = AtomicCheckpointIO()
    release = held_writes(monkeypatch)
    old, best, last = tmp_path / "best-epoch000.ckpt", tmp_path / "best-epoch001.ckpt", tmp_path / "last.ckpt"
    old.write_bytes(b"the earlier best")
    state = checkpoint_of(2)
    writer.save_checkpoint(state, best)
    state["state_dict"]["w"].zero_()  # training goes on: the save holds the state as it was asked for
    writer.link_checkpoint(best, last)
    writer.remove_checkpoint(old)
    assert not best.exists() and not last.exists() and old.exists()  # nothing done yet, and in this order:
    release.set()
    writer.teardown()  # waits for the saves, the link and the removal
    assert torch.load(best, weights_only=True)["state_dict"]["w"].eq(2).all()
    assert best.stat().st_ino == last.stat().st_ino and not old.exists() and leftovers(tmp_path) == []


def test_a_background_write_that_fails_is_raised_by_the_next_save_and_at_teardown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.ckpt"
    atomic_save(checkpoint_of(1), path)
    for next_call in ("save", "teardown", "load"):
        writer = AtomicCheckpointIO()
        fill_disk(monkeypatch, room=1000)
        writer.save_checkpoint(checkpoint_of(2), path)  # returns; the write fails in the background
        with pytest.raises(CheckpointWriteError, match=r"No space left on device; the previous checkpoint is kept$"):
            if next_call == "save":
                writer.save_checkpoint(checkpoint_of(3), path)
            elif next_call == "teardown":
                writer.teardown()
            else:
                writer.load_checkpoint(path)
        monkeypatch.undo()
        writer.teardown()
        assert torch.load(path, weights_only=True)["global_step"] == 1 and leftovers(tmp_path) == []


def test_last_ckpt_is_a_copy_where_the_file_system_has_no_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(source: object, target: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", refuse)
    writer = AtomicCheckpointIO()
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    writer.save_checkpoint(checkpoint_of(4), best)
    writer.link_checkpoint(best, last)
    writer.teardown()
    assert last.read_bytes() == best.read_bytes() and best.stat().st_ino != last.stat().st_ino


def record_saves(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every checkpoint the trainer writes from now on, as (file name, global step)."""
    saves: list[tuple[str, int]] = []
    original = AtomicCheckpointIO.save_checkpoint

    def save(self: AtomicCheckpointIO, checkpoint: dict, path: str, **options: object) -> None:
        saves.append((Path(path).name, checkpoint["global_step"]))
        original(self, checkpoint, path, **options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", save)
    return saves


@pytest.mark.parametrize(
    ("batches", "epochs", "expected"),
    [
        (  # periodic saves inside epochs, and a last.ckpt at each epoch's end although the best stays epoch 0's
            7,
            3,
            # epoch 0's last.ckpt is a link to its best checkpoint (written once)
            [("last.ckpt", 5), ("best-epoch000.ckpt", 7), ("last.ckpt", 10), ("last.ckpt", 14),
             ("last.ckpt", 15), ("last.ckpt", 20), ("last.ckpt", 21)],
        ),
        (  # a periodic save on the epoch's last step does not take the place of the epoch's best checkpoint
            5,
            2,
            [("last.ckpt", 5), ("best-epoch000.ckpt", 5), ("last.ckpt", 10), ("last.ckpt", 10)],
        ),
    ],
)  # fmt: skip
def test_last_ckpt_is_written_every_n_steps_and_at_every_epoch_end(
    train_config, monkeypatch: pytest.MonkeyPatch, batches: int, epochs: int, expected: list
) -> None:
    saves = record_saves(monkeypatch)
    cfg = train_config(
        f"+trainer.limit_train_batches={batches}", f"trainer.max_epochs={epochs}", "test=false",
        "callbacks.model_checkpoint.last_every_n_train_steps=5",
        # the "best" is the lowest epoch: only epoch 0's checkpoint is a top-k one, as after a run stops improving
        "callbacks.model_checkpoint.monitor=epoch",
    )  # fmt: skip
    summary = train(cfg)
    assert saves == expected
    checkpoints = Path(cfg.paths.output_dir) / "checkpoints"
    assert sorted(path.name for path in checkpoints.iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]
    assert summary["last_checkpoint"] == str(checkpoints / "last.ckpt")
    assert load_checkpoint(checkpoints / "last.ckpt")["global_step"] == batches * epochs


def test_an_epoch_that_writes_a_new_best_checkpoint_links_last_ckpt_to_it(
    train_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    saves = record_saves(monkeypatch)
    cfg = train_config(
        "+trainer.limit_train_batches=3", "trainer.max_epochs=2", "test=false",
        "callbacks.model_checkpoint.monitor=epoch", "callbacks.model_checkpoint.mode=max",  # every epoch a new best
    )  # fmt: skip
    train(cfg)
    assert saves == [("best-epoch000.ckpt", 3), ("best-epoch001.ckpt", 6)]  # each state written once
    checkpoints = Path(cfg.paths.output_dir) / "checkpoints"
    assert sorted(path.name for path in checkpoints.iterdir()) == ["best-epoch001.ckpt", "last.ckpt"]
    assert (checkpoints / "last.ckpt").samefile(checkpoints / "best-epoch001.ckpt")
    assert load_checkpoint(checkpoints / "last.ckpt")["global_step"] == 6


def test_save_last_link_is_refused() -> None:
    with pytest.raises(ValueError, match=r"save_last=.link. makes last\.ckpt a link"):
        ModelCheckpoint(save_last="link")


def test_a_full_disk_during_training_ends_in_one_line_and_keeps_the_last_good_checkpoint(
    train_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = train_config(
        "+trainer.limit_train_batches=5",
        "trainer.max_epochs=3",
        "test=false",
        "callbacks.model_checkpoint.monitor=epoch",
    )
    saves = record_saves(monkeypatch)
    fill_disk_after_step(monkeypatch, 5)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointWriteError) as error:
        train(cfg)
    assert (
        str(error.value)
        == f"could not write checkpoint {last}: No space left on device; the previous checkpoint is kept"
    )
    # epoch 0's last.ckpt a link to its best checkpoint; the save of epoch 1's failed in the background, and the
    # next save, epoch 2's, raises its error before it writes anything
    assert saves == [("best-epoch000.ckpt", 5), ("last.ckpt", 10), ("last.ckpt", 15)]
    assert load_checkpoint(last)["global_step"] == 5
    assert leftovers(last.parent) == []


def test_out_of_memory_names_the_batch_size_and_the_finder(train_config, monkeypatch: pytest.MonkeyPatch) -> None:
    forward = LeNet5.forward

    def forward_out_of_memory(self: LeNet5, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # training steps, not the shape check before them
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return forward(self, x)

    monkeypatch.setattr(LeNet5, "forward", forward_out_of_memory)
    with pytest.raises(UserError) as error:
        train(train_config("trainer.max_epochs=1"))
    assert str(error.value) == (
        "out of memory on cpu with data.batch_size=32: choose a smaller batch, e.g. data.batch_size=16, or less "
        "memory per example (trainer.precision=bf16-mixed, a smaller model or input); Lightning's batch-size finder "
        "gives the largest batch that fits: docs/reliability.md#out-of-memory"
    )


def trained_weights(tmp_path: Path, name: str, *overrides: str) -> tuple[dict, dict]:
    """Weights of a short deterministic run's last.ckpt, and its metrics."""
    settings = ["trainer.deterministic=true", "trainer.max_epochs=2", "+trainer.limit_train_batches=6"]
    summary = train(compose_config("train", tmp_path / name, [*FAST, *settings, *overrides]))
    weights = torch.load(summary["last_checkpoint"], weights_only=True)["state_dict"]
    return weights, {key: value for key, value in summary.items() if key.startswith(("test/", "val/"))}


def same_weights(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


def test_the_same_seed_gives_the_same_weights_and_metrics_and_another_seed_does_not(tmp_path: Path) -> None:
    weights, metrics = trained_weights(tmp_path, "a", "seed=7")
    again, metrics_again = trained_weights(tmp_path, "b", "seed=7")
    other, _ = trained_weights(tmp_path, "c", "seed=8")
    assert same_weights(weights, again)
    assert metrics == metrics_again and "test/acc" in metrics
    assert not same_weights(weights, other)


class TinyClassifier(pl.LightningModule):
    """Softmax regression that sends itself ``signum`` at batch 2 (as a scheduler or Ctrl+C would)."""

    def __init__(self, signum: int | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.signum = signum

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if batch_idx == 2 and self.signum is not None:
            os.kill(os.getpid(), self.signum)
        return nn.functional.cross_entropy(self.linear(batch[0]), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def tiny_fit(tmp_path: Path, signum: int | None) -> tuple[pl.Trainer, StopOnSignal, ModelCheckpoint]:
    stopper, checkpoint = StopOnSignal(), ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[stopper, checkpoint], plugins=[AtomicCheckpointIO()], default_root_dir=tmp_path,
    )  # fmt: skip
    data = TensorDataset(torch.randn(64, 4), torch.randint(0, 3, (64,)))
    trainer.fit(TinyClassifier(signum), DataLoader(data, batch_size=8))
    return trainer, stopper, checkpoint


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_training_at_the_step_boundary_with_a_checkpoint(tmp_path: Path, signum: int) -> None:
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    with pytest.raises(SIGTERMException):
        tiny_fit(tmp_path, signum)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 3  # the step of the batch that got the signal was finished, no more
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers  # Lightning restored the handlers


def test_without_a_signal_the_handlers_change_nothing(tmp_path: Path) -> None:
    # the handlers the process started with: default_int_handler for SIGINT, or SIG_IGN under nohup and `cmd &`
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    trainer, stopper, _ = tiny_fit(tmp_path, None)
    assert trainer.global_step == 8 and stopper.received is None
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers


def test_the_resume_command_repeats_the_overrides_with_the_checkpoint() -> None:
    argv = ["scripts/train.py", "model=resnet20", "hydra.run.dir=/old", "ckpt_path=/a.ckpt", "optimizer.lr=0.1"]
    assert resume_command("/runs/x y/last.ckpt", argv) == (
        "python scripts/train.py model=resnet20 optimizer.lr=0.1 'ckpt_path=/runs/x y/last.ckpt'"
    )


def start_args(run_dir: Path, *overrides: str) -> list[str]:
    return [
        *FAST, "trainer.max_epochs=50", "callbacks.model_checkpoint.last_every_n_train_steps=5",
        f"hydra.run.dir={run_dir}", *overrides,
    ]  # fmt: skip


def start_training(run_dir: Path, *overrides: str) -> subprocess.Popen:
    """``scripts/train.py`` in a process of its own, a long run that writes last.ckpt every 5 steps."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), *start_args(run_dir, *overrides)]
    return subprocess.Popen(
        command, cwd=run_dir.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_the_script_stops_on_a_signal_with_a_checkpoint_and_the_resume_command(
    tmp_path: Path, signum: int, code: int
) -> None:
    run_dir = tmp_path / "run"
    process = start_training(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        wait_for(last, process)  # the periodic save of step 5: training is under way, mid-epoch
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == code, stderr
    name = signal.Signals(signum).name
    [line] = [line for line in stderr.splitlines() if line.startswith("stopped by")]
    found = re.fullmatch(
        rf"stopped by {name} at step (\d+) \(epoch 0\); checkpoint saved: {re.escape(str(last))}; resume with: "
        rf"python \S+/scripts/train\.py (.*) ckpt_path={re.escape(str(last))}",
        line,
    )
    assert found, line
    assert found[2].split() == [arg for arg in start_args(run_dir) if not arg.startswith("hydra.run.dir=")]
    assert "Traceback" not in stderr
    checkpoint = load_checkpoint(last)
    assert checkpoint["global_step"] == int(found[1]) >= 5
    [order] = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]  # mid-epoch, to resume there
    assert order["epoch"] == 0 and order["position"] == 32 * checkpoint["global_step"]


# An uninterrupted run and the same run stopped mid-epoch and resumed from its last.ckpt (written every 7 steps and
# on SIGTERM) must end with the same weights, bit for bit: the resumed run goes on with the same batches, in the same
# order, with the same augmentation and the same random states.
EXACT = ["trainer.max_epochs=2", "test=false", "callbacks.model_checkpoint.last_every_n_train_steps=7"]


def final_weights(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


def run_to_the_end(run_dir: Path, *overrides: str) -> None:
    result = run_script("train.py", *FAST, *EXACT, f"hydra.run.dir={run_dir}", *overrides, cwd=run_dir.parent)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    run_to_the_end(run_dir)
    return final_weights(run_dir)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_run_stopped_mid_epoch_and_resumed_ends_with_the_weights_of_an_uninterrupted_one(
    tmp_path: Path, uninterrupted: dict, signum: int
) -> None:
    stopped = tmp_path / "stopped"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [*FAST, *EXACT, f"hydra.run.dir={stopped}"]
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    last = stopped / "checkpoints" / "last.ckpt"
    try:
        wait_for(last, process)  # the periodic save of step 7
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == (-signal.SIGKILL if signum == signal.SIGKILL else 143), stderr
    checkpoint = load_checkpoint(last)
    [order] = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert order["epoch"] == 0 and order["position"] == 32 * checkpoint["global_step"] > 0  # mid-epoch 0
    resumed = tmp_path / "resumed"
    run_to_the_end(resumed, f"ckpt_path={last}")
    weights = final_weights(resumed)
    assert weights.keys() == uninterrupted.keys()
    assert all(torch.equal(weights[key], uninterrupted[key]) for key in weights)


# --- Every phase stopped by a signal exits non-zero with its one line (training/interrupt.py) ---

# Runs a script as a user would, after wrapping one function (module:attribute) so that its n-th call sends the
# process a real signal: the phase it belongs to is under way when the signal arrives.
SIGNAL_AT = """
import importlib, os, runpy, signal, sys
target, signame, nth, script, *args = sys.argv[1:]
module_name, _, attribute = target.partition(":")
owner_name, _, name = attribute.rpartition(".")
module = importlib.import_module(module_name)
owner = getattr(module, owner_name) if owner_name else module
original, calls = getattr(owner, name), []

def send(*args, **kwargs):
    calls.append(None)
    if len(calls) == int(nth):
        os.kill(os.getpid(), getattr(signal, signame))
    return original(*args, **kwargs)

setattr(owner, name, send)
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
"""
QUICK = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=2"]


def signal_at(target: str, signum: int, nth: int, script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``scripts/<script> args``, sent ``signum`` at the ``nth`` call of ``target``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), "COLUMNS": "400"}
    command = [sys.executable, "-c", SIGNAL_AT, target, signal.Signals(signum).name, str(nth)]
    return subprocess.run(
        [*command, str(ROOT / "scripts" / script), *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def quick_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("quick") / "run"
    return Path(train(compose_config("train", run_dir, [*FAST, *QUICK, "test=false"]))["last_checkpoint"])


TEST_STEP = "training.classifier:Classifier.test_step"
STOPPED_TESTING = (
    r"while testing, after training finished; no metrics were written: test it with python scripts/eval\.py "
    r"ckpt_path=\S+/best-epoch000\.ckpt"
)


@pytest.mark.parametrize(
    ("script", "target", "nth", "signum", "args", "line", "absent"),
    [
        ("train.py", TEST_STEP, 2, signal.SIGTERM, [], STOPPED_TESTING, "metrics.json"),
        ("train.py", TEST_STEP, 2, signal.SIGINT, [], STOPPED_TESTING, "metrics.json"),
        ("train.py", "training.classifier:Classifier.training_step", 2, signal.SIGTERM, ["lr_find=true"],
         r"during the learning-rate range test \(lr_find=true\), before training; nothing to resume", "checkpoints"),
        ("train.py", "training.classifier:Classifier.validation_step", 3, signal.SIGTERM, [],  # after the sanity check
         r"at step 2 \(epoch 0\); checkpoint saved: \S+/checkpoints/last\.ckpt; resume with: .*", "metrics.json"),
        ("eval.py", TEST_STEP, 2, signal.SIGTERM, [], "while testing; no metrics were written", "metrics.json"),
        ("predict.py", "training.inference:LoadedModel.probabilities", 1, signal.SIGTERM, ["batch_size=1"],
         "before the run finished; its results were not written", "predictions.json"),
        ("export.py", "training.export:_state_dict", 1, signal.SIGINT, ["format=state_dict"],
         "before the run finished; its results were not written", "exported.pt"),
    ],
    ids=["train-test-SIGTERM", "train-test-SIGINT", "lr_find", "validation", "eval", "predict", "export"],
)  # fmt: skip
def test_a_signal_in_any_phase_stops_the_script_in_one_line_with_a_non_zero_status(
    tmp_path: Path, quick_checkpoint: Path, script: str, target: str, nth: int, signum: int, args: list, line: str,
    absent: str,
) -> None:  # fmt: skip
    run_dir = tmp_path / "run"
    given = {
        "train.py": [*FAST, *QUICK],
        "eval.py": [f"ckpt_path={quick_checkpoint}", "trainer.accelerator=cpu"],
        "predict.py": [f"ckpt_path={quick_checkpoint}", f"inputs={tmp_path / 'images'}"],
        "export.py": [f"ckpt_path={quick_checkpoint}", f"out={run_dir / 'exported.pt'}"],
    }[script]
    if script == "export.py":
        run_dir.mkdir()
    (tmp_path / "images").mkdir()
    for number in range(2):
        Image.new("L", (8, 8), 16 * number).save(tmp_path / "images" / f"{number}.png")
    result = signal_at(target, signum, nth, script, *given, *args, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 128 + signum, result.stderr
    name = signal.Signals(signum).name
    [stopped] = [text for text in result.stderr.splitlines() if text.startswith("stopped by")]
    assert re.fullmatch(f"stopped by {name} {line}", stopped), stopped
    assert "Traceback" not in result.stderr and not re.search("^error:", result.stderr, re.MULTILINE)
    assert not (run_dir / absent).exists()
    left = [path.name for path in tmp_path.rglob("*") if path.name.startswith(".lr_find") or path.suffix == ".tmp"]
    assert left == []  # no temporary checkpoint of the range test, no half-written file


# --- No run writes over another: run directories are claimed atomically (training/cli.py) ---


def run_in_process(script: str, *args: str, monkeypatch: pytest.MonkeyPatch, capsys) -> tuple[int, list[str]]:
    """``scripts/<script> args`` through the scripts' entry point, in this process: exit status and error lines."""
    from hydra.core.global_hydra import GlobalHydra

    from training.cli import run
    from training.tasks import evaluate

    task, config_name = {"train.py": (train, "train"), "eval.py": (evaluate, "eval")}[script]
    monkeypatch.setattr(sys, "argv", [f"scripts/{script}", *args])
    capsys.readouterr()
    try:
        run(task, config_name)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        GlobalHydra.instance().clear()
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    return code, [line for line in stderr.splitlines() if line.startswith("error:")]


def contents(directory: Path) -> dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes() for path in directory.rglob("*") if path.is_file()}


def test_two_runs_started_together_in_one_directory_one_runs_the_other_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        str(ROOT / "scripts" / "train.py"),
        *FAST,
        *QUICK,
        "test=false",
        f"hydra.run.dir={run_dir}",
    ]
    processes = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = sorted((process.communicate(timeout=300)[1], process.returncode)[::-1] for process in processes)
    (won, _), (lost, stderr) = results
    assert (won, lost) == (0, 2), stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("error:")]
    refused = rf"error: hydra\.run\.dir={re.escape(str(run_dir))} already holds a run \(.+\); nothing was changed\. .*"
    assert re.fullmatch(refused, line), line
    assert "Traceback" not in stderr
    assert len({path.name.split(".")[-2] for path in run_dir.glob("tensorboard/events.*")}) == 1  # one process's
    assert json.loads((run_dir / "metrics.json").read_text())["output_dir"] == str(run_dir)


def test_a_timestamped_run_directory_is_claimed_too(tmp_path: Path, monkeypatch, capsys) -> None:
    # a second run whose timestamp resolves to the same directory (here: the same year) is refused
    taken = tmp_path / time.strftime("%Y")
    taken.mkdir()
    (taken / ".claimed").write_text("pid 1\n")
    code, errors = run_in_process("train.py", *FAST, f"hydra.run.dir={tmp_path}/${{now:%Y}}", monkeypatch=monkeypatch,
                                  capsys=capsys)  # fmt: skip
    assert code == 2 and errors[0].startswith(f"error: hydra.run.dir={taken} already holds a run (started just now)")
    assert sorted(path.name for path in taken.iterdir()) == [".claimed"]


def earlier_sweep(directory: Path) -> None:
    """The files of a finished sweep of two jobs."""
    for job in ("0", "1"):
        (directory / job / ".hydra").mkdir(parents=True)
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
            (directory / job / ".hydra" / name).write_text(f"job {job}: {name}\n")
        (directory / job / "checkpoints").mkdir()
        (directory / job / "checkpoints" / "last.ckpt").write_bytes(b"weights")
        (directory / job / "metrics.json").write_text('{"test/acc": 0.9}\n')
    (directory / "multirun.yaml").write_text("earlier: sweep\n")


def test_reusing_a_sweep_directory_is_refused_before_anything_is_written(tmp_path: Path, monkeypatch, capsys) -> None:
    sweep = tmp_path / "sweep"
    earlier_sweep(sweep)
    before = contents(sweep)
    monkeypatch.chdir(tmp_path)
    args = [*FAST, "seed=3,4", f"hydra.sweep.dir={sweep}", "-m"]
    code, errors = run_in_process("train.py", *args, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and len(errors) == 1 and "already holds a run (0, 1, multirun.yaml)" in errors[0]
    assert contents(sweep) == before  # byte for byte


def test_an_output_directory_with_earlier_records_is_never_reused(tmp_path: Path, monkeypatch, capsys) -> None:
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "config.yaml").write_text("seed: 1\n")
    (earlier / "metrics.json").write_text('{"test/acc": 0.9}\n')
    before = contents(earlier)
    monkeypatch.chdir(tmp_path)
    code, errors = run_in_process("train.py", *FAST, f"paths.output_dir={earlier}", f"hydra.run.dir={tmp_path}/run",
                                  monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert code == 2 and len(errors) == 1 and errors[0].startswith(f"error: paths.output_dir={earlier} already holds")
    assert contents(earlier) == before


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs Linux's /sys")
def test_a_run_directory_where_writing_fails_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code, errors = run_in_process("train.py", *FAST, "hydra.run.dir=/sys/x", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and len(errors) == 1
    assert re.fullmatch(r"error: cannot write the run's directory /sys/x: .+; choose another hydra\.run\.dir or "
                        r"paths\.log_dir", errors[0]), errors[0]  # fmt: skip


def test_an_evaluation_may_change_how_images_are_fed(
    tmp_path: Path, quick_checkpoint: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    args = [f"ckpt_path={quick_checkpoint}", "trainer.accelerator=cpu", "+data.batch_size=7", "+data.split_seed=0"]
    code, errors = run_in_process("eval.py", *args, f"hydra.run.dir={tmp_path}/eval", monkeypatch=monkeypatch,
                                  capsys=capsys)  # fmt: skip
    assert (code, errors) == (0, [])  # the batch size, and the split seed the checkpoint was trained with
    assert "test/acc" in json.loads((tmp_path / "eval" / "metrics.json").read_text())


def test_a_record_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.json"
    write_record(path, '{"test/acc": 0.5}\n', "nothing else changed")
    fill_disk(monkeypatch, room=10)
    with pytest.raises(RecordWriteError) as error:
        write_record(path, '{"test/acc": 0.75, "test/loss": 0.5}\n', "nothing else changed")
    assert str(error.value) == f"could not write {path}: No space left on device; nothing else changed"
    assert isinstance(error.value, UserError)
    assert path.read_text() == '{"test/acc": 0.5}\n' and leftovers(tmp_path) == []


def test_the_resume_command_runs_as_printed_from_a_directory_with_any_characters(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs ✓ it's a=b $HOME" / "run"
    run_dir.parent.mkdir()
    args = [*FAST, "trainer.max_epochs=1", "+trainer.limit_train_batches=30", "+trainer.limit_val_batches=2",
            "test=false", "callbacks.model_checkpoint.last_every_n_train_steps=5"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args, hydra_override("hydra.run.dir", str(run_dir))],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(run_dir / "checkpoints" / "last.ckpt", process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("stopped by")]
    command = line.partition("; resume with: ")[2]
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # `python` is this interpreter
    resumed = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env={**env, "PATH": path}, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(next((tmp_path / "logs" / "train" / "runs").glob("*/metrics.json")).read_text())
    assert summary["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")


def test_a_link_that_cannot_be_made_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "last.ckpt").write_bytes(b"old")
    assert not atomic_link(tmp_path / "missing.ckpt", tmp_path / "last.ckpt")  # the caller writes the file instead
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last.ckpt"]
    assert (tmp_path / "last.ckpt").read_bytes() == b"old"
