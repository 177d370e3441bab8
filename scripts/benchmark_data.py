"""Training samples per second of the in-memory fast path against the per-image DataLoader path, side by side.

    python scripts/benchmark_data.py [batches=100] [batch=128] [rounds=3] [workers=<one per CPU core>]

Both paths serve the same CIFAR-shaped data (50,000 random 3x32x32 uint8 training images, the real
CIFAR10DataModule with its files replaced by generated tensors) through the ``cifar`` augmentation
preset and normalisation, and are timed alternately for ``rounds`` rounds of ``batches`` batches each,
so the ratio (the median of the rounds' ratios) holds on a noisy machine. The fast path's time includes the
whole-batch transform (``on_after_batch_transfer``); the per-image path's includes its DataLoader workers starting.
"""

from __future__ import annotations

import functools
import platform
import time

import torch

from data.base import available_cpus, default_num_workers
from data.torchvision_sets import CIFAR10DataModule
from training.cli import parse_int_options, run_plain
from training.timing import alternate, median, median_ratio

DEFAULTS = {"batches": 100, "batch": 128, "rounds": 3, "workers": default_num_workers()}
CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000


class GeneratedCIFAR10(CIFAR10DataModule):
    """CIFAR10DataModule with its files replaced by random images of the same shape and type."""

    def _read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(int(train))
        size = CIFAR_TRAIN if train else CIFAR_TEST
        images = torch.randint(0, 256, (size, 3, 32, 32), dtype=torch.uint8, generator=generator)
        return images, torch.randint(0, 10, (size,), generator=generator)


def samples_per_second(datamodule: CIFAR10DataModule, batches: int) -> float:
    """Draw ``batches`` training batches as the model would receive them, and count images per second."""
    start = time.perf_counter()
    count = 0
    for index, (images, _) in enumerate(datamodule.train_dataloader()):
        if datamodule.fast_path:
            images = datamodule.batch_transform(images, train=True)
        count += images.shape[0]
        if index + 1 == batches:
            break
    return count / (time.perf_counter() - start)


def compare_paths(batches: int, batch: int, rounds: int, workers: int) -> dict[str, float]:
    """Training samples per second of the per-image path and of the fast path, the median of ``rounds`` alternating
    rounds of ``batches`` batches each, and the median of the rounds' ratios (``fast path / per-image``)."""
    paths = {
        "per-image": GeneratedCIFAR10(augment="cifar", fast_path=False, batch_size=batch, num_workers=workers),
        "fast path": GeneratedCIFAR10(augment="cifar", fast_path=True, batch_size=batch),
    }
    for datamodule in paths.values():
        datamodule.setup()
    sides = {name: functools.partial(samples_per_second, datamodule, batches) for name, datamodule in paths.items()}
    rates = alternate(sides, rounds)  # both see the same machine
    return {
        **{name: median(values) for name, values in rates.items()},
        "fast path / per-image": median_ratio(rates["fast path"], rates["per-image"]),
    }


def main(args: list[str]) -> None:
    options = parse_int_options(args, DEFAULTS)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {available_cpus()} CPU cores, "
        f"{torch.get_num_threads()} threads; per-image path with {options['workers']} DataLoader workers"
    )
    print(f"CIFAR-shaped data, cifar preset, batch {options['batch']}, {options['batches']} batches per round")
    results = compare_paths(options["batches"], options["batch"], options["rounds"], options["workers"])
    print("| path | samples/s (median of rounds) |")
    print("|---|---|")
    for name in ("per-image", "fast path"):
        print(f"| {name} | {results[name]:,.0f} |")
    print(f"fast path / per-image: {results['fast path / per-image']:.1f}x")


if __name__ == "__main__":
    run_plain(main, ValueError)
