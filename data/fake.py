"""Random images of any size and class count, held in memory: smoke tests and benchmarks.

The images are uniform random bytes and the labels random too: a model can only memorise them. Each split draws
from a generator of its own, seeded with the split's number, so the splits never share an image and repeat exactly
between runs. Like the real in-memory sets (``data.in_memory``) they go through the whole-batch fast path, on the
GPU when training there, with any size-keeping augmentation: ``data=fake data.train_size=45000`` is CIFAR-10's
training split in shape, for timing a CIFAR recipe (``experiment=resnet20_cifar10 data=fake``) without the files.
"""

from __future__ import annotations

from typing import Any

import torch

from data.base import require_integers
from data.in_memory import InMemoryDataModule

# uniform bytes, as [0, 1] floats: mean 0.5; normalised with mean and std 0.5 to [-1, 1] ("published")
FAKE_STATS = 0.5, 0.5


class FakeDataModule(InMemoryDataModule):
    """``train_size``/``val_size``/``test_size`` random ``in_channels`` x ``image_size`` x ``image_size`` images."""

    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 32,
        in_channels: int = 3,
        train_size: int = 256,
        val_size: int = 64,
        test_size: int = 64,
        batch_size: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, batch_size=batch_size, **kwargs)
        require_integers({"image_size": image_size, "in_channels": in_channels})
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3 (grey or RGB images), got {in_channels!r}")
        require_integers({"train_size": train_size, "val_size": val_size, "test_size": test_size})
        self._set_class_names([f"class_{index}" for index in range(num_classes)])
        self.image_size = self.native_size = image_size
        self.in_channels = self.native_channels = in_channels
        self.published_stats = tuple((value,) * in_channels for value in FAKE_STATS)
        self.split_sizes = {"train": train_size, "val": val_size, "test": test_size}

    def _read_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        shape = (self.in_channels, self.image_size, self.image_size)
        splits = {}
        for seed, (split, size) in enumerate(self.split_sizes.items()):
            generator = torch.Generator().manual_seed(seed)
            images = torch.randint(0, 256, (size, *shape), dtype=torch.uint8, generator=generator)
            splits[split] = images, torch.randint(0, self.num_classes, (size,), generator=generator)
        return splits
