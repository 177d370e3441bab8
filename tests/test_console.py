"""What a training run prints (training/console.py): a one-line model summary, and a progress bar that keeps to one
line of at most 80 columns a bar in an 80-column terminal."""

import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import models
from conftest import ROOT
from data.text import CharTextDataModule
from models.char_rnn import CharRNN
from training.console import ModelSummary

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
