"""Learning-rate schedules that torch does not have by name: 1/t decay, and linear warmup in front of any schedule."""

from __future__ import annotations

from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LinearLR, LRScheduler, ReduceLROnPlateau, SequentialLR


class InverseTimeDecay:
    """The factor ``1 / (1 + k t)`` of 1/t decay; a class (not a closure) so that it pickles and checkpoints."""

    def __init__(self, k: float) -> None:
        self.k = k

    def __call__(self, t: int) -> float:
        return 1.0 / (1.0 + self.k * t)


def inverse_time(optimizer: Optimizer, k: float) -> LambdaLR:
    """1/t decay (CS231n notes): ``lr_t = lr_0 / (1 + k t)``, ``t`` counting the scheduler's steps."""
    if k < 0:
        raise ValueError(f"k must not be negative, got {k}")
    return LambdaLR(optimizer, InverseTimeDecay(k))


def with_warmup(
    optimizer: Optimizer, warmup: int, schedule: Callable[[Optimizer], LRScheduler] | None = None
) -> LRScheduler:
    """Linear warmup over ``warmup`` scheduler steps, then ``schedule`` (None: the constant base rate).

    Step ``t < warmup`` runs at ``lr * (t + 1) / (warmup + 1)`` (Goyal et al. 2017's gradual warmup, never
    at zero); ``schedule`` starts from its own step 0 when the warmup ends, so its milestones count from
    there. ReduceLROnPlateau cannot follow: ``SequentialLR`` steps its schedulers without the metric.
    """
    if warmup < 1:
        raise ValueError(f"warmup must be a positive number of steps, got {warmup}")
    ramp = LinearLR(optimizer, start_factor=1 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    if schedule is None:
        return ramp
    after = schedule(optimizer)
    if isinstance(after, ReduceLROnPlateau):
        raise ValueError("ReduceLROnPlateau cannot follow a warmup (it needs the metric at every step); set warmup: 0")
    return SequentialLR(optimizer, [ramp, after], milestones=[warmup])
