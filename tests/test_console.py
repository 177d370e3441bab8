"""What a training run prints (training/console.py): a one-line model summary, and a progress bar that keeps to one
line of at most 80 columns a bar in an 80-column terminal."""

import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from pytorch_lightning.callbacks import RichProgressBar

import models
from conftest import ROOT
from data.text import CharTextDataModule
from models.char_rnn import CharRNN
from training import console
from training.console import ModelSummary, ProgressBar

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def summary_line(net: torch.nn.Module, datamodule: object, capsys: pytest.CaptureFixture[str]) -> str:
    trainer, callback = SimpleNamespace(datamodule=datamodule, is_global_zero=True), ModelSummary()
    callback.setup(trainer, SimpleNamespace(net=net), "fit")
    callback.setup(trainer, SimpleNamespace(net=net), "fit")  # lr_find's range test, then the fit: printed once
    return capsys.readouterr().out.strip()


def test_model_summary_is_the_networks_parameters_and_multiply_adds(capsys: pytest.CaptureFixture[str]) -> None:
    net = models.create_model("lenet5")
    digits = SimpleNamespace(input_shape=(1, 32, 32))
    assert summary_line(net, digits, capsys) == (
        "model: LeNet5, 61,706 parameters, 416.52 K multiply-adds per 1x32x32 input"
    )
    for parameter in net.features.parameters():  # a fixed feature extractor: the classifier alone trains
        parameter.requires_grad_(False)
    assert "61,706 parameters (850 trainable)" in summary_line(net, digits, capsys)


def test_model_summary_of_a_language_model_runs_token_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    datamodule = CharTextDataModule(str(text), seq_len=10, batch_size=4)
    net = CharRNN(datamodule.vocab_size, embedding_dim=8, hidden_size=16, num_layers=1)
    assert re.fullmatch(
        r"model: CharRNN, [\d,]+ parameters, [\d.]+ K multiply-adds per 10 input", summary_line(net, datamodule, capsys)
    )


def run_in_terminal(args: list[str], cwd: Path, columns: int) -> str:
    """The output of ``scripts/train.py`` in a terminal (a pseudo-terminal) ``columns`` wide, as written to it."""
    primary, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "24", "OMP_NUM_THREADS": "1", "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args], cwd=cwd, env=env, stdout=secondary,
        stderr=secondary, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert process.wait(timeout=300) == 0
    return b"".join(chunks).decode(errors="replace")


def test_progress_bars_keep_to_one_line_of_80_columns_in_an_80_column_terminal(tmp_path: Path) -> None:
    output = run_in_terminal(["trainer.max_epochs=2"], tmp_path, columns=80)
    # rich redraws a live display of n lines by going up n - 1 lines: at most the epoch's and the validation's bar
    assert "\x1b[1A\x1b[2K\x1b[1A" not in output
    assert "`Trainer.fit` stopped" not in output  # Lightning's line would land on the bar's, still drawn
    frames = [line for line in re.split(r"[\r\n]", ANSI.sub("", output)) if "━" in line]
    assert any(line.startswith("Epoch 1/1") and "loss: " in line and "val_acc: " in line for line in frames)
    assert max(len(line.rstrip()) for line in frames) <= 80


def test_the_bars_are_redrawn_at_most_every_redraw_seconds_with_the_values_logged_since(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [0.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: now[0])
    drawn = []  # each redraw: the batch, and the values shown (Lightning's bar reads them as it redraws)
    monkeypatch.setattr(RichProgressBar, "on_train_batch_start", lambda *args: None)

    def redraw(self: ProgressBar, trainer: Any, task: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        drawn.append((batch_idx, self.get_metrics(trainer, task)))

    monkeypatch.setattr(RichProgressBar, "on_train_batch_end", redraw)
    bar = ProgressBar({"train/loss_step": "loss"}, redraw_seconds=4)
    logged: dict[str, torch.Tensor] = {}
    for batch_idx in range(10):  # a batch a second; the task logs at batches 1 and 5
        logs = batch_idx in (1, 5)
        trainer = SimpleNamespace(is_last_batch=batch_idx == 9, callback_metrics=logged)
        task = SimpleNamespace(logs_this_step=lambda logs=logs: logs)
        bar.on_train_batch_start(trainer, task, None, batch_idx)
        if logs:
            logged["train/loss_step"] = torch.tensor(float(batch_idx))
        bar.on_train_batch_end(trainer, task, None, None, batch_idx)
        now[0] += 1
    # the first batch, the first at least 4 s after each redraw, and the epoch's last; the value logged at the
    # undrawn batch 1 is shown at the next redraw, the one of batch 5 at batch 8
    assert drawn == [(0, {}), (4, {"loss": 1.0}), (8, {"loss": 5.0}), (9, {"loss": 5.0})]
    validated = []
    monkeypatch.setattr(RichProgressBar, "on_validation_batch_end", lambda self, *args: validated.append(args[-2]))
    for batch_idx in range(4):  # at 10, 11, 12 and 13 s: the last redraw was at 8 s
        bar.on_validation_batch_end(SimpleNamespace(), SimpleNamespace(), None, None, batch_idx)
        now[0] += 1
    assert validated == [2]
    with pytest.raises(ValueError, match="redraw_seconds must be 0 or more"):
        ProgressBar({}, redraw_seconds=-1)


def test_a_disabled_bar_reads_nothing_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RichProgressBar, "on_train_batch_start", lambda *args: None)
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end", lambda *args: None)
    read = []

    class Value:
        def __float__(self) -> float:  # a read on the host
            read.append(self)
            return 1.0

    value = Value()
    bar = ProgressBar({"train/loss_step": "loss"})
    bar.disable()  # as Lightning does in the processes of a distributed run but the first
    trainer = SimpleNamespace(is_last_batch=True, callback_metrics={"train/loss_step": value})
    task = SimpleNamespace(logs_this_step=lambda: True)
    bar.on_train_batch_start(trainer, task, None, 0)
    bar.on_train_batch_end(trainer, task, None, None, 0)
    assert read == []
