"""The base of every image-classification DataModule: what a model config needs to know about the data."""

from __future__ import annotations

import os
from collections.abc import Callable, Sized
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler

MAX_AUTO_WORKERS = 8


def available_cpus() -> int:
    """CPU cores this process may run on (the affinity mask, which containers and SLURM set)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_num_workers() -> int:
    """DataLoader worker processes when none are given: one per available core, at most 8."""
    return min(available_cpus(), MAX_AUTO_WORKERS)


def require_integers(values: dict[str, Any], minimum: int = 1, expected: str = "a positive integer") -> None:
    """Raise ``ValueError`` for the first of ``values`` (name: value) that is not an integer (a bool is not one) of at
    least ``minimum``: "<name> must be <expected>, got <value>"."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be {expected}, got {value!r}")


def evaluation_sampler(datamodule: pl.LightningDataModule, dataset: Sized) -> DistributedSampler | None:
    """In a distributed run, this process's share of an evaluation set, every example in exactly one share; None in
    a single process.

    Lightning would otherwise give each process a ``DistributedSampler``, which pads the shares to one length with
    repeated examples, so that metrics summed over the processes count those twice. Unpadded, the shares differ by
    at most one example, and the processes by at most one batch: evaluation runs no collective operation per batch,
    and the metrics sync once, at the end (torchmetrics, ``self.log(..., sync_dist=True)``).
    """
    trainer = datamodule.trainer
    if trainer is None or trainer.world_size < 2:
        return None
    return UnrepeatedDistributedSampler(
        dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
    )


class ClassificationDataModule(pl.LightningDataModule):
    """A LightningDataModule that knows its classes, channels and image size.

    ``num_classes`` is declared in the data config (so that the model config can interpolate
    ``${data.num_classes}``) and checked against the data set's own classes. Subclasses call
    ``_set_class_names``, set ``in_channels`` and ``image_size``, and fill ``train_set``,
    ``val_set`` and ``test_set`` in ``setup``.

    A subclass takes its own arguments, and those whose default it sets (``num_classes``, ``batch_size``), and passes
    the others on with ``**kwargs`` (the config checks follow them to the base classes).

    DataLoader settings default to what suits the machine: ``num_workers=None`` starts one worker
    process per available CPU core (at most 8), ``pin_memory=None`` pins when CUDA is available, and
    workers persist between epochs; both can be set explicitly.
    """

    class_names: list[str]
    in_channels: int
    image_size: int

    collate_fn: Callable | None = None
    targets = "classes"  # what a batch's labels are: class indices (a multi-label set: "attributes")

    def __init__(
        self, num_classes: int, batch_size: int, num_workers: int | None = None, pin_memory: bool | None = None
    ) -> None:
        super().__init__()
        require_integers({"num_classes": num_classes, "batch_size": batch_size})
        if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 0):
            raise ValueError(f"num_workers must be a non-negative integer or null (one per CPU), got {num_workers!r}")
        self.declared_num_classes = num_classes
        self.batch_size = batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _set_class_names(self, class_names: list[str]) -> None:
        """Record the data set's classes, failing when they disagree with the declared ``num_classes``."""
        if len(class_names) != self.declared_num_classes:
            raise ValueError(
                f"num_classes={self.declared_num_classes} was given, "
                f"but {type(self).__name__} has {len(class_names)} classes"
            )
        self.class_names = class_names

    @property
    def output_size(self) -> int:
        """How many outputs a model needs for this data: one score per class."""
        return self.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(channels, height, width) of one input image as the model receives it."""
        return (self.in_channels, self.image_size, self.image_size)

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its data loaders are used")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=None if shuffle else evaluation_sampler(self, dataset),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate_fn,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
