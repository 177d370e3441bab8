"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100, read from their original files by torchvision.

The files live under ``data_dir`` (default ``datasets``, relative to where the run starts) in the
layout torchvision uses (``<data_dir>/MNIST/raw/``, ``<data_dir>/FashionMNIST/raw/``,
``<data_dir>/cifar-10-batches-py/``, ``<data_dir>/cifar-100-python/``); ``download=True`` fetches
them there on a machine with internet. The images are held in memory as uint8 tensors (N, C, H, W)
and served by ``data.in_memory`` (whole-batch fast path by default). ``val_size`` images are carved
out of the training split by a permutation seeded with ``split_seed``, independent of the training
seed (5,000 by default: He et al.'s 45k/5k split of CIFAR-10). Each image is scaled to [0, 1],
augmented if asked (training split only; ``data.augment``'s presets), resized to ``image_size`` if that
differs from the native size (e.g. 227 for AlexNet), repeated to 3 channels if asked for a grey set, padded
with ``pad`` zero pixels on every side (2 centres MNIST's 28x28 digits in LeNet-5's 32x32 field, as the paper did;
a network with such a field gets it without asking, ``training.tasks.build``), and normalised
(``data.normalize``: the published per-channel mean and standard deviation by default).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch
from torchvision import datasets
from torchvision.datasets import VisionDataset

from data.augment import SIZING_PRESETS
from data.base import require_integers
from data.in_memory import InMemoryDataModule


class TorchvisionDataModule(InMemoryDataModule):
    """A torchvision classification set held in memory; subclasses state only what differs between sets."""

    dataset_class: ClassVar[type[VisionDataset]]
    class_names_of_set: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        data_dir: str = "datasets",
        download: bool = False,
        num_classes: int = 10,
        batch_size: int = 128,
        image_size: int | None = None,
        in_channels: int | None = None,
        pad: int = 0,
        val_size: int = 5000,
        split_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, batch_size=batch_size, **kwargs)
        name = type(self).__name__
        image_size = self.native_size if image_size is None else image_size
        in_channels = self.native_channels if in_channels is None else in_channels
        require_integers({"image_size": image_size}, expected=f"a positive integer (native: {self.native_size})")
        accepted_channels = (1, 3) if self.native_channels == 1 else (3,)
        if in_channels not in accepted_channels:
            accepted = " or ".join(map(str, accepted_channels))
            why = " (3 repeats the grey channel)" if self.native_channels == 1 else " (its images are colour)"
            raise ValueError(f"in_channels must be {accepted} for {name}{why}, got {in_channels!r}")
        require_integers({"val_size": val_size})
        require_integers({"pad": pad}, 0, "a non-negative integer (pixels on every side)")
        self._set_class_names(list(self.class_names_of_set))
        self.data_dir = str(data_dir)
        self.download = download
        self.image_size = image_size
        self.in_channels = in_channels
        self.pad = pad
        self.val_size = val_size
        self.split_seed = split_seed

    @classmethod
    def expected_files(cls, data_dir: str) -> list[str]:
        """The files torchvision reads for this set under ``data_dir``."""
        dataset = cls.dataset_class
        if hasattr(dataset, "resources"):  # MNIST-like: uncompressed idx files under <root>/<Class>/raw/
            names = [os.path.splitext(os.path.basename(url))[0] for url, _ in dataset.resources]
            return [os.path.join(data_dir, dataset.__name__, "raw", n) for n in names]
        files = [n for n, _ in dataset.train_list + dataset.test_list] + [dataset.meta["filename"]]
        return [os.path.join(data_dir, dataset.base_folder, n) for n in files]

    def _read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One split as uint8 images (N, C, H, W) and long labels."""
        name = self.dataset_class.__name__
        expected = f"expected {', '.join(self.expected_files(self.data_dir))}"
        try:
            dataset = self.dataset_class(root=self.data_dir, train=train, download=self.download)
        except (RuntimeError, OSError) as err:  # torchvision's "Error downloading ...", or no network at all
            if self.download:
                cause = err.__cause__ or err.__context__  # what the last mirror answered
                reason = (str(err).splitlines() or [type(err).__name__])[0].rstrip(": ")
                reason += f": {cause}" if cause is not None and str(cause) not in reason else ""
                raise FileNotFoundError(
                    f"could not download {name} into {self.data_dir!r} ({reason}); without a network, put its files "
                    f"there yourself ({expected}) and leave out data.download, or give data.data_dir=<dir holding them>"
                ) from err
            raise FileNotFoundError(
                f"{name} not found (or corrupted) in {self.data_dir!r}: {expected}; "
                "pass data.download=true on a machine with internet, or data.data_dir=<dir holding them>"
            ) from err
        classes = getattr(dataset, "classes", None)
        if isinstance(dataset, datasets.CIFAR10) and list(classes) != self.class_names:
            raise ValueError(f"the files in {self.data_dir!r} name the classes {classes}, expected {self.class_names}")
        images = torch.as_tensor(dataset.data)
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)  # (N, H, W) or NHWC
        return images.contiguous(), torch.as_tensor(dataset.targets, dtype=torch.long)

    def _read_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        train_images, train_labels = self._read(train=True)
        if self.val_size >= len(train_labels):
            raise ValueError(
                f"val_size={self.val_size} leaves no training images: the training split has {len(train_labels)}; "
                f"set data.val_size to fewer, e.g. data.val_size={max(1, len(train_labels) // 10)} (a tenth)"
            )
        order = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(self.split_seed))
        val, train = order[: self.val_size], order[self.val_size :]
        return {
            "train": (train_images[train], train_labels[train]),
            "val": (train_images[val], train_labels[val]),
            "test": self._read(train=False),
        }

    def _statistics_cache(self) -> tuple[str, dict]:
        key = {
            "dataset": self.dataset_class.__name__,
            "val_size": self.val_size,
            "split_seed": self.split_seed,
            "image_size": self.image_size,
            "in_channels": self.in_channels,
            **({"pad": self.pad} if self.pad else {}),  # (keeps the key of caches written before padding existed)
            "sizing_preset": self.augment in SIZING_PRESETS,
        }
        return self.data_dir, key


class MNISTDataModule(TorchvisionDataModule):
    """LeCun et al.'s handwritten digits: 60,000 training and 10,000 test 28x28 grey images of 0-9."""

    dataset_class = datasets.MNIST
    class_names_of_set = tuple(str(digit) for digit in range(10))
    native_channels = 1
    native_size = 28
    published_stats = ((0.1307,), (0.3081,))


class FashionMNISTDataModule(TorchvisionDataModule):
    """Zalando's clothing images: 60,000 training and 10,000 test 28x28 grey images of 10 kinds."""

    dataset_class = datasets.FashionMNIST
    class_names_of_set = tuple(datasets.FashionMNIST.classes)
    native_channels = 1
    native_size = 28
    published_stats = ((0.2860,), (0.3530,))


class CIFAR10DataModule(TorchvisionDataModule):
    """Krizhevsky's CIFAR-10: 50,000 training and 10,000 test 32x32 colour images of 10 classes."""

    dataset_class = datasets.CIFAR10
    class_names_of_set = (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    native_channels = 3
    native_size = 32
    published_stats = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


class CIFAR100DataModule(TorchvisionDataModule):
    """Krizhevsky's CIFAR-100: 50,000 training and 10,000 test 32x32 colour images of 100 fine classes."""

    dataset_class = datasets.CIFAR100
    class_names_of_set = (
        "apple",
        "aquarium_fish",
        "baby",
        "bear",
        "beaver",
        "bed",
        "bee",
        "beetle",
        "bicycle",
        "bottle",
        "bowl",
        "boy",
        "bridge",
        "bus",
        "butterfly",
        "camel",
        "can",
        "castle",
        "caterpillar",
        "cattle",
        "chair",
        "chimpanzee",
        "clock",
        "cloud",
        "cockroach",
        "couch",
        "crab",
        "crocodile",
        "cup",
        "dinosaur",
        "dolphin",
        "elephant",
        "flatfish",
        "forest",
        "fox",
        "girl",
        "hamster",
        "house",
        "kangaroo",
        "keyboard",
        "lamp",
        "lawn_mower",
        "leopard",
        "lion",
        "lizard",
        "lobster",
        "man",
        "maple_tree",
        "motorcycle",
        "mountain",
        "mouse",
        "mushroom",
        "oak_tree",
        "orange",
        "orchid",
        "otter",
        "palm_tree",
        "pear",
        "pickup_truck",
        "pine_tree",
        "plain",
        "plate",
        "poppy",
        "porcupine",
        "possum",
        "rabbit",
        "raccoon",
        "ray",
        "road",
        "rocket",
        "rose",
        "sea",
        "seal",
        "shark",
        "shrew",
        "skunk",
        "skyscraper",
        "snail",
        "snake",
        "spider",
        "squirrel",
        "streetcar",
        "sunflower",
        "sweet_pepper",
        "table",
        "tank",
        "telephone",
        "television",
        "tiger",
        "tractor",
        "train",
        "trout",
        "tulip",
        "turtle",
        "wardrobe",
        "whale",
        "willow_tree",
        "wolf",
        "woman",
        "worm",
    )
    native_channels = 3
    native_size = 32
    published_stats = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))

    def __init__(self, num_classes: int = 100, **kwargs) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
