"""The character-level language model: text data in streams, truncated BPTT, training and sampling."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_script
from data.text import CharTextDataModule
from models.char_rnn import CharRNN
from training.config import UserError
from training.language_model import LanguageModel
from training.tasks import check_model_fits_data, train

SENTENCE = "The quick brown fox jumps over the lazy dog. "


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "input.txt"
    path.write_text(SENTENCE * 200, encoding="utf-8")  # 9,000 characters
    return path


def test_vocabulary_splits_and_shapes(text_file: Path) -> None:
    datamodule = CharTextDataModule(str(text_file), seq_len=10, batch_size=4, val_fraction=0.1, test_fraction=0.2)
    text = text_file.read_text()
    assert datamodule.vocab == "".join(sorted(set(text))) and datamodule.vocab_size == len(set(text)) == 29
    assert datamodule.output_size == 29 and datamodule.input_shape == (10,) and datamodule.input_dtype == torch.long
    train_part, val_part, test_part = (
        datamodule.decode(datamodule.splits[split]) for split in ("train", "val", "test")
    )
    assert (len(train_part), len(val_part), len(test_part)) == (6300, 900, 1800)
    assert train_part + val_part + test_part == text  # contiguous, in order, validation before test
    datamodule.setup()
    inputs, targets = datamodule.train_set[0]
    assert inputs.shape == targets.shape == (4, 10) and inputs.dtype == targets.dtype == torch.long
    assert len(datamodule.train_set) == (6300 // 4 - 1) // 10 and len(datamodule.val_set) == (900 // 4 - 1) // 10
    batches = list(datamodule.train_dataloader())
    assert len(batches) == len(datamodule.train_set) and batches[0][0].shape == (4, 10)


def test_each_stream_continues_where_the_previous_batch_stopped(text_file: Path) -> None:
    datamodule = CharTextDataModule(str(text_file), seq_len=10, batch_size=4, val_fraction=0.1, test_fraction=0.1)
    datamodule.setup()
    batches = list(datamodule.train_dataloader())
    train_part = datamodule.splits["train"]
    stream_length = len(train_part) // 4
    for stream in range(4):
        served = torch.cat([inputs[stream] for inputs, _ in batches])
        start = stream * stream_length
        assert torch.equal(served, train_part[start : start + len(served)])  # batch k + 1 continues batch k
        for inputs, targets in batches:
            assert torch.equal(inputs[stream, 1:], targets[stream, :-1])  # the target is the input shifted by one
        assert batches[1][0][stream, 0] == batches[0][1][stream, -1]


def test_bad_text_files_fail_with_what_was_expected(tmp_path: Path, text_file: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"text file not found: .*missing.txt"):
        CharTextDataModule(str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty.txt is empty; .* needs at least 64,640 characters"):
        CharTextDataModule(str(empty))
    short = tmp_path / "short.txt"
    short.write_text(SENTENCE * 10)
    with pytest.raises(ValueError, match=r"450 characters, too short: its val split gets 22 but one batch needs 44 "):
        CharTextDataModule(str(short), seq_len=10, batch_size=4, val_fraction=0.05, test_fraction=0.05)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café ".encode("latin-1") * 100)
    with pytest.raises(ValueError, match=r"latin1.txt is not UTF-8 text: byte 3 \(0xe9\)"):
        CharTextDataModule(str(latin1))
    with pytest.raises(ValueError, match=r"vocab_size=30 but .* has 29 distinct characters"):
        CharTextDataModule(str(text_file), seq_len=10, batch_size=4, vocab_size=30)


def test_just_long_enough_is_accepted(tmp_path: Path) -> None:
    probe = tmp_path / "probe.txt"
    probe.write_text("x")
    with pytest.raises(ValueError, match="too short") as info:
        CharTextDataModule(str(probe), seq_len=5, batch_size=2)
    needed = int(info.value.args[0].split("needs at least ")[1].split(" ")[0].replace(",", ""))
    probe.write_text((SENTENCE * 100)[:needed])
    CharTextDataModule(str(probe), seq_len=5, batch_size=2)
    probe.write_text((SENTENCE * 100)[: needed - 1])
    with pytest.raises(ValueError, match="too short"):
        CharTextDataModule(str(probe), seq_len=5, batch_size=2)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_char_rnn_shapes_and_state(text_file: Path, cell: str) -> None:
    datamodule = CharTextDataModule(str(text_file), seq_len=10, batch_size=4)
    net = CharRNN(datamodule.vocab_size, embedding_dim=8, cell=cell, hidden_size=16, num_layers=2)
    check_model_fits_data(net, datamodule)
    tokens = torch.randint(0, 29, (3, 12))
    logits, state = net.forward_with_state(tokens)
    assert logits.shape == (3, 12, 29) and torch.equal(net(tokens), logits)
    h = state[0] if cell == "lstm" else state
    assert h.shape == (2, 3, 16)
    # running the second half from the first half's state equals running the whole sequence
    first, state = net.forward_with_state(tokens[:, :5])
    second, _ = net.forward_with_state(tokens[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), logits)
    with pytest.raises(ValueError, match="unknown cell 'rnn'; accepted: lstm, gru"):
        CharRNN(29, cell="rnn")


class Recorder(CharRNN):
    """A CharRNN that records the state each call starts from and the one it returns."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple] = []

    def forward_with_state(self, tokens, state=None):
        logits, new_state = super().forward_with_state(tokens, state)
        self.calls.append((state, new_state))
        return logits, new_state


def test_state_is_carried_across_batches_detached_and_reset(text_file: Path) -> None:
    datamodule = CharTextDataModule(str(text_file), seq_len=10, batch_size=4)
    datamodule.setup()
    net = Recorder(datamodule.vocab_size, embedding_dim=8, hidden_size=16, num_layers=1)
    module = LanguageModel(net, optimizer=torch.optim.Adam, vocab=datamodule.vocab)
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value)
    batches = [datamodule.train_set[i] for i in range(3)]
    module.on_train_epoch_start()
    for index, batch in enumerate(batches):
        module.training_step(batch, index).backward()
    (start0, end0), (start1, end1), (start2, _) = net.calls
    assert start0 is None and start1 is not None and start2 is not None
    assert all(torch.equal(a, b) for a, b in zip(start1, end0, strict=True))  # batch 1 starts where batch 0 ended
    assert all(torch.equal(a, b) for a, b in zip(start2, end1, strict=True))
    assert all(not part.requires_grad for part in start1) and end0[0].requires_grad  # detached: truncated BPTT
    module.on_train_epoch_start()
    module.training_step(batches[0], 0)
    assert net.calls[-1][0] is None  # a new epoch starts from zeros
    module.eval_state = start1
    module.on_validation_epoch_start()
    with torch.no_grad():
        module.validation_step(datamodule.val_set[0], 0)
        loss, _ = module._step(datamodule.val_set[0], None)
    assert net.calls[-2][0] is None  # so does every validation loop, apart from the training state
    assert module.train_state is not None
    module.on_validation_epoch_end()  # the epoch's values, logged once
    assert float(logged["val/loss"]) == pytest.approx(loss.item())
    assert float(logged["val/bpc"]) == pytest.approx(float(logged["val/loss"]) / math.log(2))
    assert float(logged["val/perplexity"]) == pytest.approx(math.exp(loss.item()))
    module.on_test_epoch_start()
    with torch.no_grad():
        module.test_step(datamodule.test_set[0], 0)
    assert net.calls[-1][0] is None
    module.on_test_epoch_end()
    assert float(logged["test/bpc"]) == pytest.approx(float(logged["test/loss"]) / math.log(2))
    with pytest.raises(ValueError, match="the model predicts 29 characters but the vocabulary has 3"):
        LanguageModel(net, optimizer=torch.optim.Adam, vocab="abc")


@pytest.mark.slow  # about 30 s on one core: three short epochs and two runs of scripts/sample.py
def test_training_learns_the_text_and_sampling_uses_the_checkpoint(train_config, text_file: Path) -> None:
    cfg = train_config(
        "experiment=char_lstm",
        f"data.path={text_file}",
        "data.seq_len=20",
        "data.batch_size=8",
        "data.val_fraction=0.1",
        "data.test_fraction=0.1",
        "model.embedding_dim=16",
        "model.hidden_size=32",
        "model.num_layers=1",
        "optimizer.lr=0.01",
        "trainer.max_epochs=3",
        "logger=csv",
    )
    summary = train(cfg)
    uniform_bpc = math.log2(29)
    assert summary["test/bpc"] == pytest.approx(summary["test/loss"] / math.log(2))
    assert summary["test/bpc"] < 0.5 < uniform_bpc  # a repeated sentence is nearly certain once learned
    assert json.loads((Path(summary["output_dir"]) / "metrics.json").read_text())["test/bpc"] == summary["test/bpc"]
    checkpoint = torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["vocab"] == "".join(sorted(set(SENTENCE)))

    ckpt = summary["best_checkpoint"]
    result = run_script("sample.py", f"ckpt_path={ckpt}", "prime=The quick", "length=60", "seed=0", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    text = result.stdout.removesuffix("\n")
    assert text.startswith("The quick") and len(text) == len("The quick") + 60
    assert "lazy dog" in text  # the model has learnt the sentence
    result = run_script("sample.py", f"ckpt_path={ckpt}", "prime=Zoë", cwd=ROOT)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: the prime has character(s) never seen in training: 'Z', 'ë'; expected characters of the model's "
        "vocabulary of 29: ' .Tabcdefghijklmnopqrstuvwxyz'"
    ]


def _sample_script():
    spec = importlib.util.spec_from_file_location("sample_script", ROOT / "scripts" / "sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ckpt_path=missing.ckpt"], "checkpoint not found: missing.ckpt"),
        (["ckpt_path=bad.ckpt"], "bad.ckpt is not a readable PyTorch checkpoint"),
        (["ckpt_path=x.ckpt", "temperature=0"], "temperature must be greater than 0, got 0.0"),
        (["ckpt_path=x.ckpt", "length=-1"], "length must be 0 or more characters, got -1"),
        (["ckpt_path=x.ckpt", "temp=1"], "unknown argument 'temp=1'; usage: python scripts/sample.py"),
        (["prime=a"], "ckpt_path=<checkpoint> is required"),
    ],
)
def test_sample_script_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str) -> None:
    # in-process, for speed; the end-to-end test runs the script and checks its one-line error and exit 2
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as info:
        _sample_script().main(args)
    assert str(info.value).startswith(message)
