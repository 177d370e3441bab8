"""What the benchmark scripts share: sides timed alternately, medians of their ratios, and an epoch clock.

On a shared, noisy machine only ratios measured side by side hold: each round times every side once, the side that
goes first taking turns, and a comparison is the median over the rounds of each round's ratio.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch


def median(values: Sequence[float]) -> float:
    """The middle value (the upper one of the two middle values for an even count)."""
    return sorted(values)[len(values) // 2]


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median over the rounds of each round's ``numerator / denominator``."""
    return median([a / b for a, b in zip(numerators, denominators, strict=True)])


def alternate(sides: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call every side once per round, the order rotated by one place each round; each side's results in round order.

    The rotation gives every side every place in turn and never calls a side twice in a row (with two sides, the
    order reverses every other round). Reversing the order of three or more would leave the middle ones in the
    middle, and give the first and the last back-to-back calls the others never get: a bias of about 2% here.
    """
    results: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(sides[name]())
    return results


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock(pl.Callback):
    """Seconds and steps of the training parts of the epochs after the first, and seconds of those whole epochs
    (training, validation, checkpoints and the callbacks' epoch-end work).

    A whole epoch runs from its ``on_train_epoch_start`` to the next epoch's (or to ``on_train_end``), so that it
    counts the epoch-end work of every callback: Lightning runs the checkpoint callbacks' hooks after all others,
    this one's included. The first epoch is left out: it pays for first allocations and lazily initialised libraries.
    """

    def __init__(self) -> None:
        self.training_seconds, self.epoch_seconds, self.steps = 0.0, 0.0, 0
        self._epoch: int | None = None  # the epoch being timed, from ``_start``

    def _end_epoch(self, pl_module: pl.LightningModule) -> None:
        if self._epoch is not None and self._epoch > 0:
            synchronize(pl_module.device)
            self.epoch_seconds += time.perf_counter() - self._start
        self._epoch = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end_epoch(pl_module)
        synchronize(pl_module.device)
        self._start, self._first_step, self._epoch = time.perf_counter(), trainer.global_step, trainer.current_epoch

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.current_epoch > 0:
            synchronize(pl_module.device)
            self.training_seconds += time.perf_counter() - self._start
            self.steps += trainer.global_step - self._first_step

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end_epoch(pl_module)
