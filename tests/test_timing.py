"""training/timing.py: the order in which the benchmarks time their sides."""

import itertools
import time

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from training.timing import Clock, alternate, median, median_ratio


def calls_in_order(names: str, rounds: int) -> tuple[str, dict[str, list[float]]]:
    order: list[str] = []
    clock = itertools.count()

    def side(name: str) -> float:
        order.append(name)
        return float(next(clock))

    results = alternate({name: lambda name=name: side(name) for name in names}, rounds)
    return "".join(order), results


def test_two_sides_take_turns_going_first() -> None:
    order, results = calls_in_order("ab", 4)
    assert order == "abbaabba"
    assert results == {"a": [0.0, 3.0, 4.0, 7.0], "b": [1.0, 2.0, 5.0, 6.0]}


@pytest.mark.parametrize("names", ["abc", "abcd"])
def test_every_side_takes_every_place_and_none_runs_twice_in_a_row(names: str) -> None:
    rounds = 2 * len(names)
    order, results = calls_in_order(names, rounds)
    assert all(len(values) == rounds for values in results.values())
    places = [order[index : index + len(names)] for index in range(0, len(order), len(names))]
    for name in names:
        assert sorted(place.index(name) for place in places) == sorted(list(range(len(names))) * 2)
    assert all(first != second for first, second in itertools.pairwise(order))


def test_median_ratio_is_the_median_of_the_rounds_ratios() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median_ratio([2.0, 9.0, 3.0], [1.0, 1.0, 2.0]) == 2.0


class SlowEpochEnd(pl.callbacks.Checkpoint):
    """A checkpoint callback (which Lightning calls after all others) whose epoch-end work takes 0.1 s."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        time.sleep(0.1)


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_clock_counts_the_checkpoint_callbacks_epoch_end_work(tmp_path) -> None:
    clock = Clock()
    trainer = pl.Trainer(
        max_epochs=4, callbacks=[clock, SlowEpochEnd()], logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(Tiny(), DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4))
    assert 0.3 <= clock.epoch_seconds < 0.3 + 2  # epochs 1 to 3, each with its 0.1 s at the end
