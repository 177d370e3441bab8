"""Any UTF-8 text file as data for a character-level language model (Karpathy's char-rnn; Graves 2013).

The vocabulary is the sorted set of the file's characters. The text, encoded as one long tensor of
character indices, is split contiguously into train, validation and test parts (the last
``val_fraction + test_fraction`` of the file, validation first); each part is cut into ``batch_size``
parallel streams (the "batchify" of PyTorch's word-language-model example) and served in order as
(input, target) chunks of ``seq_len`` characters, the target being the input shifted by one. Batch
k + 1 of stream b continues batch k of stream b where it stopped, so the hidden state a recurrent
network ends a batch with is the right state to start the next one with: truncated backpropagation
through time.

The vocabulary size has to be known when the model is built, before the DataModule exists, so
``configs/data/text.yaml`` reads it from the file with the config resolver ``text_vocab_size``
registered here (``${text_vocab_size:${data.path}}``; ``${text_vocab:${data.path}}`` gives the
characters themselves): the model config then interpolates ``${data.vocab_size}`` as usual.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from data.base import require_integers

SPLITS = ("train", "val", "test")


@functools.lru_cache(maxsize=8)
def _read(path: str, mtime_ns: int, size: int) -> str:
    """The file's text; cached on (path, modification time, size) since the config reads it twice."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not UTF-8 text: byte {err.start} (0x{data[err.start]:02x}) cannot be decoded; "
            "a character-level language model reads UTF-8 text files"
        ) from None


def read_text(path: str | Path) -> str:
    """The text of the UTF-8 file at ``path``: FileNotFoundError naming a missing file, ValueError for other bytes."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path}")
    stat = path.stat()
    return _read(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def vocabulary(text: str) -> str:
    """The sorted distinct characters of ``text``, as one string: character i has index i."""
    return "".join(sorted(set(text)))


def _resolve_vocab(path: str) -> str | None:
    try:
        return vocabulary(read_text(path))
    except (OSError, ValueError):
        return None  # the DataModule reports the problem with the file when it is built


def _resolve_vocab_size(path: str) -> int | None:
    vocab = _resolve_vocab(path)
    return None if vocab is None else len(vocab)


OmegaConf.register_new_resolver("text_vocab", _resolve_vocab, replace=True)
OmegaConf.register_new_resolver("text_vocab_size", _resolve_vocab_size, replace=True)


class StreamBatches(Dataset):
    """Item i is batch i: ``(inputs, targets)``, each (streams, seq_len), targets one character ahead."""

    def __init__(self, streams: torch.Tensor, seq_len: int) -> None:
        self.streams = streams  # (batch_size, stream_length)
        self.seq_len = seq_len

    def __len__(self) -> int:
        return (self.streams.shape[1] - 1) // self.seq_len

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range; there are {len(self)}")
        start = index * self.seq_len
        chunk = self.streams[:, start : start + self.seq_len + 1]
        return chunk[:, :-1], chunk[:, 1:]


class CharTextDataModule(pl.LightningDataModule):
    """The UTF-8 text file at ``path``, in ``batch_size`` streams of ``seq_len``-character chunks per split.

    ``vocab_size`` is what the config read from the file (``${text_vocab_size:${data.path}}``); it is
    checked against the text, and ``None`` takes the text's.
    """

    def __init__(
        self,
        path: str,
        seq_len: int = 100,
        batch_size: int = 32,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        vocab_size: int | None = None,
    ) -> None:
        super().__init__()
        require_integers({"seq_len": seq_len, "batch_size": batch_size}, expected="an integer of at least 1")
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 < value < 1:
                raise ValueError(f"{name} must be in (0, 1), got {value!r}")
        if val_fraction + test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction must leave text to train on, got {val_fraction} + {test_fraction}"
            )
        self.path = Path(path).expanduser()
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.fractions = (val_fraction, test_fraction)
        text = read_text(self.path)
        needed = self.characters_needed()
        if not text:
            raise ValueError(
                f"{self.path} is empty; with seq_len={seq_len}, batch_size={batch_size} and these split fractions "
                f"a character-level language model needs at least {needed:,} characters of text"
            )
        self.vocab = vocabulary(text)
        if vocab_size is not None and vocab_size != len(self.vocab):
            raise ValueError(
                f"vocab_size={vocab_size} but {self.path} has {len(self.vocab)} distinct characters; "
                "leave data.vocab_size as configured (it is read from the file)"
            )
        self.char_to_index = {char: index for index, char in enumerate(self.vocab)}
        encoded = self.encode(text)
        lengths = self.split_lengths(len(text))
        per_batch = batch_size * (seq_len + 1)
        for split, length in zip(SPLITS, lengths, strict=True):
            if length < per_batch:
                raise ValueError(
                    f"{self.path} has {len(text):,} characters, too short: its {split} split gets {length:,} but "
                    f"one batch needs {per_batch:,} (batch_size x (seq_len + 1)); the file needs at least "
                    f"{needed:,} characters with these settings, or set a smaller data.seq_len or data.batch_size"
                )
        self.splits = dict(zip(SPLITS, torch.split(encoded, lengths), strict=True))
        self.train_set = self.val_set = self.test_set = None

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def input_shape(self) -> tuple[int]:
        return (self.seq_len,)

    @property
    def input_dtype(self) -> torch.dtype:
        return torch.long

    @property
    def output_size(self) -> int:
        return self.vocab_size

    def split_lengths(self, total: int) -> tuple[int, int, int]:
        """Characters of (train, val, test) in a text of ``total`` characters: val and test are the tail."""
        val, test = (int(total * fraction) for fraction in self.fractions)
        return total - val - test, val, test

    def characters_needed(self) -> int:
        """The shortest text whose every split holds one batch of ``batch_size`` x (``seq_len`` + 1) characters."""
        per_batch = self.batch_size * (self.seq_len + 1)
        total = math.ceil(per_batch / min(*self.fractions, 1 - sum(self.fractions)))
        while min(self.split_lengths(total)) < per_batch:
            total += 1
        return total

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.char_to_index[char] for char in text], dtype=torch.long)

    def decode(self, indices: torch.Tensor) -> str:
        return "".join(self.vocab[index] for index in indices.tolist())

    def batchify(self, encoded: torch.Tensor) -> StreamBatches:
        """``encoded`` cut into ``batch_size`` consecutive streams (the rest dropped), served in chunks."""
        stream_length = len(encoded) // self.batch_size
        streams = encoded[: stream_length * self.batch_size].reshape(self.batch_size, stream_length)
        return StreamBatches(streams, self.seq_len)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.train_set, self.val_set, self.test_set = (self.batchify(self.splits[split]) for split in SPLITS)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=None, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=None, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=None, shuffle=False)
