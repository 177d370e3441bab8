"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images of 0-9, no download needed.

The images (UCI "Optical Recognition of Handwritten Digits", 16 grey levels) are scaled to [0, 1],
resized to ``image_size`` (32 for LeNet-5), split into train/val/test by a stratified, seeded split
that does not depend on the training seed, and normalised with the training split's own mean and
standard deviation. The whole set is a few MB and is held in memory as tensors. With ``augment``
each training image is distorted by a small random affine map (shift, rotation, scale), the kind of
distortion LeCun et al. used to bring LeNet-5's MNIST error from 0.95% to 0.8%.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from data.base import ClassificationDataModule

GREY_LEVELS = 16  # pixel values in load_digits() run from 0 to 16


class TensorImageDataset(Dataset):
    """Images and labels held as tensors, with a transform applied to each image as it is read."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        return (self.transform(image) if self.transform else image), self.labels[index]


class DigitsDataModule(ClassificationDataModule):
    """The bundled digits, resized to ``image_size`` with ``in_channels`` (1, or 3 by repeating the grey)."""

    def __init__(
        self,
        num_classes: int = 10,
        batch_size: int = 64,
        image_size: int = 32,
        in_channels: int = 1,
        augment: bool = True,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(num_classes=num_classes, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory)
        if not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size must be an integer of at least 8 (the digits are 8x8), got {image_size!r}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3 for the grey digits, got {in_channels!r}")
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(
                "val_fraction and test_fraction must lie in (0, 1) and sum to less than 1, "
                f"got {val_fraction!r} and {test_fraction!r}"
            )
        self._set_class_names([str(digit) for digit in range(10)])
        self.image_size = image_size
        self.in_channels = in_channels
        self.augment = augment
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.mean: list[float] = []
        self.std: list[float] = []

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / GREY_LEVELS
        images = TF.resize(images, [self.image_size, self.image_size], antialias=True).clamp(0, 1)
        images = images.expand(-1, self.in_channels, -1, -1).contiguous()
        labels = torch.tensor(digits.target, dtype=torch.long)

        index = torch.arange(len(labels)).numpy()
        train_val, test = train_test_split(
            index, test_size=self.test_fraction, stratify=labels, random_state=self.split_seed
        )
        train, val = train_test_split(
            train_val,
            test_size=self.val_fraction / (1 - self.test_fraction),
            stratify=labels[train_val],
            random_state=self.split_seed,
        )
        self.mean = images[train].mean(dim=(0, 2, 3)).tolist()
        self.std = images[train].std(dim=(0, 2, 3)).tolist()
        normalize = v2.Normalize(self.mean, self.std)
        distort = v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))
        train_transform = v2.Compose([distort, normalize]) if self.augment else normalize
        self.train_set = TensorImageDataset(images[train], labels[train], train_transform)
        self.val_set = TensorImageDataset(images[val], labels[val], normalize)
        self.test_set = TensorImageDataset(images[test], labels[test], normalize)
