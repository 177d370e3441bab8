"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images of 0-9, no download needed.

The images (UCI "Optical Recognition of Handwritten Digits", 16 grey levels) are scaled to [0, 1],
resized to ``image_size`` (32 for LeNet-5), split into train/val/test by a stratified, seeded split
that does not depend on the training seed, and normalised with the training split's own mean and
standard deviation (``normalize: computed``; with so few images they are computed on every run). The
whole set is a few MB and is held in memory as tensors (``data.in_memory``). With ``augment: mnist`` each
training image is distorted by a small random affine map (shift, rotation, scale), the kind of
distortion LeCun et al. used to bring LeNet-5's MNIST error from 0.95% to 0.8%.
"""

from __future__ import annotations

from typing import Any

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torchvision.transforms.v2 import functional as TF

from data.base import require_integers
from data.in_memory import InMemoryDataModule

GREY_LEVELS = 16  # pixel values in load_digits() run from 0 to 16


class DigitsDataModule(InMemoryDataModule):
    """The bundled digits, resized to ``image_size`` with ``in_channels`` (1, or 3 by repeating the grey)."""

    native_channels = 1

    def __init__(
        self,
        num_classes: int = 10,
        batch_size: int = 64,
        image_size: int = 32,
        in_channels: int = 1,
        augment: str = "mnist",
        normalize: str = "computed",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, batch_size=batch_size, augment=augment, normalize=normalize, **kwargs)
        require_integers({"image_size": image_size}, 8, "an integer of at least 8 (the digits are 8x8)")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3 for the grey digits, got {in_channels!r}")
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(
                "val_fraction and test_fraction must lie in (0, 1) and sum to less than 1, "
                f"got {val_fraction!r} and {test_fraction!r}"
            )
        self._set_class_names([str(digit) for digit in range(10)])
        self.image_size = self.native_size = image_size  # resized once, when read
        self.in_channels = in_channels
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed

    def _read_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / GREY_LEVELS
        images = TF.resize(images, [self.image_size, self.image_size], antialias=True).clamp(0, 1)
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
        return {
            split: (images[index], labels[index]) for split, index in (("train", train), ("val", val), ("test", test))
        }
