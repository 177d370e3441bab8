"""Sequence tasks for recurrent networks: the digits read as sequences, and the adding problem.

Sequential MNIST (Le, Jaitly & Hinton 2015): each image is read row by row (``image_size`` steps of
``image_size`` pixels) or pixel by pixel (``image_size**2`` steps of one value), and classified from the
last hidden state; on MNIST itself (28x28) or on the bundled 8x8 digits, which need no download.

The adding problem (Hochreiter & Schmidhuber 1997, experiment 4, in the form of Le et al. 2015):
each step carries two numbers, a value drawn from U(0, 1) and a marker that is 1 at exactly two
steps, one in each half of the sequence, and 0 elsewhere; the target is the sum of the two marked
values. Always answering 1 scores a mean squared error of Var(U1 + U2) = 1/6 = 0.167, the baseline a
network must beat to show that it carries information across ``seq_len`` steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from data.base import require_integers
from data.digits import DigitsDataModule
from data.in_memory import Reshape
from data.torchvision_sets import MNISTDataModule

ADDING_BASELINE_MSE = 1 / 6


class ReadAsSequences:
    """Mixin for a grey-image DataModule: serve each image as a sequence of its rows or of its pixels.

    Put it before the in-memory image DataModule in the bases, and call ``_read_as_sequences`` in ``__init__``.
    """

    image_size: int
    in_channels: int
    pad: int

    def _read_as_sequences(self, order: str, input_size: int) -> None:
        if self.in_channels != 1 or self.pad:
            raise ValueError(
                f"a sequence is read from grey images without padding: in_channels must be 1 and pad 0, "
                f"got {self.in_channels} and {self.pad}"
            )
        features = {"rows": self.image_size, "pixels": 1}
        if order not in features:
            raise ValueError(f"unknown order {order!r}; accepted: rows, pixels")
        if input_size != features[order]:
            raise ValueError(
                f"input_size={input_size!r} does not fit order={order}, which feeds {features[order]} "
                f"value(s) per step; set data.input_size={features[order]}"
            )
        self.order = order
        self.input_size = input_size

    @property
    def input_shape(self) -> tuple[int, int]:
        """(steps, features) of one sequence."""
        return (self.image_size**2 // self.input_size, self.input_size)

    def _final_steps(self) -> list[Callable]:
        """After normalisation, read each image row by row (or pixel by pixel) as (steps, features)."""
        return [Reshape(self.input_shape)]


class SequentialDigitsDataModule(ReadAsSequences, DigitsDataModule):
    """The bundled digits as sequences: ``order="rows"`` (steps of ``image_size`` pixels) or ``"pixels"``."""

    def __init__(
        self, order: str = "rows", input_size: int = 8, image_size: int = 8, augment: str = "none", **kwargs: Any
    ) -> None:
        super().__init__(image_size=image_size, augment=augment, **kwargs)
        self._read_as_sequences(order, input_size)


class SequentialMNISTDataModule(ReadAsSequences, MNISTDataModule):
    """Sequential MNIST (Le, Jaitly & Hinton 2015): 28 steps of 28 pixels (rows) or 784 steps of 1 (pixels)."""

    def __init__(self, order: str = "rows", input_size: int = 28, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._read_as_sequences(order, input_size)


class AddingProblemDataModule(pl.LightningDataModule):
    """Generated adding-problem sequences of ``seq_len`` steps, (value, marker) per step; fixed by ``seed``."""

    def __init__(
        self,
        seq_len: int = 100,
        input_size: int = 2,
        train_size: int = 10_000,
        val_size: int = 1_000,
        test_size: int = 1_000,
        batch_size: int = 50,
        seed: int = 0,
    ) -> None:
        super().__init__()
        require_integers({"seq_len": seq_len}, 2, "an integer of at least 2")
        sizes = {"train_size": train_size, "val_size": val_size, "test_size": test_size, "batch_size": batch_size}
        require_integers(sizes, expected="an integer of at least 1")
        if input_size != 2:
            raise ValueError(
                f"the adding problem feeds 2 values per step (value, marker); got input_size={input_size!r}"
            )
        self.seq_len = seq_len
        self.input_size = input_size
        self.sizes = (train_size, val_size, test_size)
        self.batch_size = batch_size
        self.seed = seed
        self.train_set = self.val_set = self.test_set = None

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.seq_len, self.input_size)

    @property
    def output_size(self) -> int:
        return 1

    def generate(self, count: int, generator: torch.Generator) -> TensorDataset:
        """``count`` sequences of shape (seq_len, 2) and their targets."""
        values = torch.rand(count, self.seq_len, generator=generator)
        half = self.seq_len // 2
        first = torch.randint(0, half, (count,), generator=generator)  # one marker in each half
        second = torch.randint(half, self.seq_len, (count,), generator=generator)
        markers = torch.zeros(count, self.seq_len)
        rows = torch.arange(count)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        targets = values[rows, first] + values[rows, second]
        return TensorDataset(torch.stack([values, markers], dim=-1), targets)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        generator = torch.Generator().manual_seed(self.seed)
        self.train_set, self.val_set, self.test_set = (self.generate(size, generator) for size in self.sizes)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.batch_size)
