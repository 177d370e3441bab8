"""Random images of any size and class count (torchvision's ``FakeData``), for smoke tests and benchmarks.

The labels are random too: a model can only memorise them. Each split draws from its own range of
``FakeData``'s per-index seeds, so the splits never share an image and repeat exactly between runs.
"""

from __future__ import annotations

import torch
from torchvision.datasets import FakeData
from torchvision.transforms import v2

from data.base import ClassificationDataModule


class FakeDataModule(ClassificationDataModule):
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
        num_workers: int | None = None,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__(num_classes=num_classes, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory)
        for name, value in (("image_size", image_size), ("in_channels", in_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3 (grey or RGB images), got {in_channels!r}")
        for name, value in (("train_size", train_size), ("val_size", val_size), ("test_size", test_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self._set_class_names([f"class_{index}" for index in range(num_classes)])
        self.image_size = image_size
        self.in_channels = in_channels
        self.split_sizes = (train_size, val_size, test_size)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        to_tensor = v2.Compose(
            [
                v2.ToImage(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize([0.5] * self.in_channels, [0.5] * self.in_channels),
            ]
        )
        offset = 0
        splits = []
        for size in self.split_sizes:
            splits.append(
                FakeData(
                    size=size,
                    image_size=(self.in_channels, self.image_size, self.image_size),
                    num_classes=self.num_classes,
                    transform=to_tensor,
                    random_offset=offset,
                )
            )
            offset += size
        self.train_set, self.val_set, self.test_set = splits
