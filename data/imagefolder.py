"""ImageNet-style image folders: ``<data_dir>/train/<class>/<image>`` and ``<data_dir>/val/<class>/<image>``.

The classes are the sorted folder names of ``train/`` (as ``torchvision.datasets.ImageFolder`` finds them),
and ``val/`` must hold the same ones. As for ImageNet, whose labelled validation images serve as the test
set, ``val/`` is the test split; the validation split is ``val_size`` images carved out of ``train/`` by a
permutation seeded with ``split_seed`` (independent of the training seed). Files are found by torchvision's
``make_dataset`` and read with PIL as RGB by ``data.images.to_model_mode`` (16-bit grey scaled to 8 bits,
transparency over white, 32-bit integer and float pixels refused as unreadable); ``in_channels=1`` turns them grey.
Images may have any size.

Training images go through the augmentation preset ``augment`` (``data.augment``): a sizing preset
(``alexnet``, ``vgg``, ``inception``) makes ``image_size`` x ``image_size`` crops itself; a size-keeping
preset (``none``, ``cifar``, ``mnist``) is applied to the evaluation's centre view (shorter side resized to
256/224 of ``image_size``, centre crop), so that ``none`` trains on exactly what is evaluated. Validation and
test images get the evaluation transform: the centre crop, or AlexNet's ten crops ((10, C, H, W) per image).
Then the ``normalize`` choice of ``data.normalize``: ``published`` is ImageNet's mean and standard deviation;
``computed`` and ``mean_image`` come from the training split's centre views, cached beside the data.

A file that cannot be decoded never turns into a wrong example: with ``bad_images="fail"`` reading it raises
``UnreadableImageError`` naming the file and why; with ``"skip"`` a warning names it and the batch is built
without it (``collate_fn`` drops it, image and label).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from PIL import ImageFile
from torch.utils.data import Dataset, default_collate
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.transforms import v2

from data.augment import EVAL_CROPS, PRESETS, SIZE_KEEPING_PRESETS, eval_transform, train_transform
from data.base import ClassificationDataModule, require_integers
from data.images import open_image, to_model_mode, why_unreadable
from data.normalize import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NORMALIZATIONS,
    Normalizer,
    build_normalizer,
    cached_statistics,
    compute_statistics,
)

LAYOUT = "<data_dir>/train/<class>/<image> and <data_dir>/val/<class>/<image>"
BAD_IMAGES = ("fail", "skip")
# ITU-R 601-2 luma weights, as PIL's convert("L") and v2.Grayscale use. The grey mean is exact; the grey
# standard deviation is the weighted one, exact only for fully correlated channels (nearly so for photos).
GREY_WEIGHTS = (0.299, 0.587, 0.114)
IMAGENET_GREY_MEAN = (sum(w * m for w, m in zip(GREY_WEIGHTS, IMAGENET_MEAN, strict=True)),)
IMAGENET_GREY_STD = (sum(w * s for w, s in zip(GREY_WEIGHTS, IMAGENET_STD, strict=True)),)


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded; the message names the file and why."""

    def __init__(self, message: str) -> None:
        # An error in a DataLoader worker is raised again in the main process as type(err)(worker traceback):
        # keep only the traceback's last line, the original message.
        prefix = f"{type(self).__module__}.{type(self).__qualname__}: "
        last_line = message.rstrip().rsplit("\n", 1)[-1]
        if "\n" in message.rstrip() and last_line.startswith(prefix):
            message = last_line.removeprefix(prefix)
        super().__init__(message)


class ImageFiles(Dataset):
    """``(path, class index)`` samples read with PIL as RGB (``to_model_mode``) and transformed as they are read.

    An unreadable file raises ``UnreadableImageError`` (``bad_images="fail"``) or, with ``"skip"``, is warned
    about and returned as ``None``, which ``drop_skipped`` leaves out of the batch.
    """

    def __init__(self, samples: list[tuple[str, int]], transform: Callable, bad_images: str = "fail") -> None:
        self.samples = samples
        self.transform = transform
        self.bad_images = bad_images

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        path, label = self.samples[index]
        try:
            image = to_model_mode(open_image(path), "RGB")
        except Exception as err:  # whatever PIL raises for a file it cannot decode, or pixels it cannot use
            if self.bad_images == "fail":
                raise UnreadableImageError(f"cannot read image {path}: {why_unreadable(err)}") from err
            warnings.warn(f"skipping unreadable image {path}: {why_unreadable(err)}", stacklevel=2)
            return None
        return self.transform(image), label


def drop_skipped(batch: list[tuple[torch.Tensor, int] | None]) -> Any:
    """``default_collate`` of the examples that were read, leaving out the unreadable images skipped as ``None``."""
    kept = [item for item in batch if item is not None]
    if not kept:
        raise UnreadableImageError(
            f"all {len(batch)} images of a batch were unreadable (bad_images=skip; the warnings name them)"
        )
    return default_collate(kept)


def _names(names: list[str], most: int = 10) -> str:
    shown = ", ".join(names[:most])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > most else shown


class ImageFolderDataModule(ClassificationDataModule):
    """Images in class folders, ``<data_dir>/train/<class>/<image>`` (train and validation) and ``val/`` (test)."""

    collate_fn = staticmethod(drop_skipped)

    def __init__(
        self,
        data_dir: str = "datasets/imagenet",
        num_classes: int = 1000,
        image_size: int = 224,
        in_channels: int = 3,
        batch_size: int = 64,
        val_size: int = 10000,
        split_seed: int = 0,
        augment: str = "alexnet",
        eval_crop: str = "center",
        normalize: str = "published",
        bad_images: str = "fail",
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, batch_size=batch_size, **kwargs)
        require_integers({"image_size": image_size})
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (grey) or 3 (RGB), got {in_channels!r}")
        require_integers({"val_size": val_size})
        if not isinstance(split_seed, int) or isinstance(split_seed, bool):
            raise ValueError(f"split_seed must be an integer, got {split_seed!r}")
        for name, value, accepted in (
            ("augment", augment, PRESETS),
            ("eval_crop", eval_crop, EVAL_CROPS),
            ("normalize", normalize, NORMALIZATIONS),
            ("bad_images", bad_images, BAD_IMAGES),
        ):
            if value not in accepted:
                raise ValueError(f"{name} must be one of {', '.join(accepted)}, got {value!r}")
        self.data_dir = str(data_dir)
        self.image_size = image_size
        self.in_channels = in_channels
        self.val_size = val_size
        self.split_seed = split_seed
        self.augment = augment
        self.eval_crop = eval_crop
        self.normalize = normalize
        self.bad_images = bad_images
        self.normalizer: Normalizer | None = None

    def _scan(self, split: str, classes: list[str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
        """The class names of ``<data_dir>/<split>`` (``classes`` if given) and its (path, class index) samples."""
        directory = os.path.join(self.data_dir, split)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"{directory} not found: expected {LAYOUT} (set data.data_dir)")
        try:
            found, class_to_idx = find_classes(directory)
        except FileNotFoundError:
            raise FileNotFoundError(f"no class folders in {directory}: expected {LAYOUT}") from None
        if classes is not None and found != classes:
            train_dir = os.path.join(self.data_dir, "train")
            differences = [
                f"{label}: {_names(names)}"
                for label, names in (
                    (f"missing from {split}/", sorted(set(classes) - set(found))),
                    ("not in train/", sorted(set(found) - set(classes))),
                )
                if names
            ]
            raise ValueError(f"{directory} must hold the class folders of {train_dir}; {'; '.join(differences)}")
        try:
            samples = make_dataset(directory, class_to_idx, extensions=IMG_EXTENSIONS)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{directory}: {err}; expected {LAYOUT}") from None
        return found, samples

    def _statistics_key(self, samples: list[tuple[str, int]]) -> dict:
        """What the training split's statistics depend on: its files, the image size and channels."""
        files = hashlib.sha256("\n".join(os.path.relpath(path, self.data_dir) for path, _ in samples).encode())
        return {
            "dataset": "imagefolder",
            "classes": self.num_classes,
            "train_files": files.hexdigest(),
            "val_size": self.val_size,
            "split_seed": self.split_seed,
            "image_size": self.image_size,
            "in_channels": self.in_channels,
        }

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if ImageFile.LOAD_TRUNCATED_IMAGES:
            raise ValueError(
                "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is switched on, which would read truncated images as partly "
                "grey; switch it off (use data.bad_images=skip to leave unreadable images out)"
            )
        if not os.path.isdir(self.data_dir):
            raise FileNotFoundError(f"image folder {self.data_dir} not found: expected {LAYOUT} (set data.data_dir)")
        classes, samples = self._scan("train")
        try:
            self._set_class_names(classes)
        except ValueError as err:
            train_dir = os.path.join(self.data_dir, "train")
            raise ValueError(f"{err} (the folders of {train_dir}); set data.num_classes={len(classes)}") from None
        _, test_samples = self._scan("val", classes)
        if self.val_size >= len(samples):
            raise ValueError(
                f"val_size={self.val_size} leaves no training images: "
                f"{os.path.join(self.data_dir, 'train')} has {len(samples)}"
            )
        order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        val_samples = [samples[i] for i in order[: self.val_size]]
        train_samples = [samples[i] for i in order[self.val_size :]]

        grey = [v2.Grayscale(num_output_channels=1)] if self.in_channels == 1 else []
        centre_view = v2.Compose([*grey, eval_transform(self.image_size, "center")])

        def compute() -> dict[str, torch.Tensor]:
            loader = self._loader(ImageFiles(train_samples, centre_view, self.bad_images), shuffle=False)
            return compute_statistics(images for images, _ in loader)

        published = (IMAGENET_MEAN, IMAGENET_STD) if self.in_channels == 3 else (IMAGENET_GREY_MEAN, IMAGENET_GREY_STD)
        self.normalizer = build_normalizer(
            self.normalize,
            published,
            lambda: cached_statistics(self.data_dir, self._statistics_key(train_samples), compute),
        )
        # size-keeping presets augment the centre view; sizing presets make their own image_size crops
        first = [centre_view] if self.augment in SIZE_KEEPING_PRESETS else grey
        train = v2.Compose([*first, train_transform(self.augment, self.image_size), self.normalizer])
        evaluation = v2.Compose([*grey, eval_transform(self.image_size, self.eval_crop), self.normalizer])
        self.train_set = ImageFiles(train_samples, train, self.bad_images)
        self.val_set = ImageFiles(val_samples, evaluation, self.bad_images)
        self.test_set = ImageFiles(test_samples, evaluation, self.bad_images)
