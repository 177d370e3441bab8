"""A training order that a run resumed from a checkpoint continues exactly, also in the middle of an epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


class ResumableSampler(Sampler[int]):
    """``range(size)`` in a new random order every epoch: the permutation drawn from ``seed + epoch``.

    The seed is drawn from the global random state (which the run's ``seed`` sets) when the first pass starts,
    unless it was given or restored before. Lightning calls ``set_epoch`` before every epoch, as it does for a
    ``DistributedSampler``. A run restored from a checkpoint calls ``resume(epoch, position)`` before its first
    pass, which is then the rest of ``epoch``'s order from ``position`` on: the batches an uninterrupted run would
    have seen, in the same order. Apart from that first seed the order uses a generator of its own, never the
    global random state, so starting or resuming an epoch leaves that state (augmentation, dropout) untouched.
    """

    def __init__(self, size: int, seed: int | None = None) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.position = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def resume(self, epoch: int, position: int) -> None:
        """Start the next pass at index ``position`` of ``epoch``'s order."""
        self.epoch, self.position = epoch, position

    def __len__(self) -> int:
        return self.size  # a whole epoch's, also when resuming: Lightning counts the epoch's batches from it

    def __iter__(self) -> Iterator[int]:
        if self.seed is None:
            self.seed = int(torch.randint(2**62, ()).item())
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        position, self.position = self.position, 0
        yield from order[position:].tolist()


class ResumableDataLoader(DataLoader):
    """A DataLoader over a ``ResumableSampler`` with the stateful-dataloader interface, which Lightning saves in
    every checkpoint and restores before a resumed run's first batch: the order's seed, and the epoch and the
    example at which to go on.

    ``progress()`` says how far training has got, as (epoch, examples of it whose step has run); the loader cannot
    know, since Lightning fetches a batch ahead of the one it trains on.
    """

    def __init__(self, *args: Any, progress: Callable[[], tuple[int, int]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.progress = progress

    def state_dict(self) -> dict[str, int]:
        if not isinstance(self.sampler, ResumableSampler) or self.sampler.seed is None:
            return {}  # never iterated, or Lightning put another sampler in (trainer.overfit_batches)
        epoch, position = self.progress()
        return {"seed": self.sampler.seed, "epoch": epoch, "position": position}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if state_dict and isinstance(self.sampler, ResumableSampler):
            self.sampler.seed = state_dict["seed"]
            self.sampler.resume(state_dict["epoch"], state_dict["position"])
