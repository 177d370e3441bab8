"""Data sets held in memory as one tensor (digits, MNIST, Fashion-MNIST, CIFAR), with a whole-batch fast path.

Two ways to feed a model from the same tensors, with the same augmentation semantics:

* ``fast_path=True`` (the default): a batch is one gather from the image tensor (kept on the GPU when
  training there), and conversion, augmentation, resizing and normalisation run on the whole batch at
  once in ``on_after_batch_transfer``, on the batch's device, each image with its own random parameters
  (``data.batch_augment``). No worker processes are needed.
* ``fast_path=False``: the classic per-image path, a ``Dataset`` whose transform augments each image in
  DataLoader workers (``data.augment``); the sizing presets (``alexnet``, ``vgg``, ``inception``) need it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from data.augment import PRESETS, SIZING_PRESETS, eval_transform, train_transform
from data.base import ClassificationDataModule, evaluation_sampler
from data.batch_augment import batch_augmentation
from data.normalize import NORMALIZATIONS, Normalizer, build_normalizer, cached_statistics, compute_statistics
from data.resumable import ResumableDataLoader, ResumableSampler

STATISTICS_CHUNK = 1000  # images per step when computing normalisation statistics


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


class GatherBatch:
    """A DataLoader ``collate_fn`` over ``range(len(dataset))``: the whole batch in one indexing operation."""

    def __init__(self, dataset: TensorImageDataset) -> None:
        self.dataset = dataset

    def __call__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, device=self.dataset.images.device)
        return self.dataset.images.index_select(0, index), self.dataset.labels.index_select(0, index)


class Reshape:
    """Reshape the trailing (C, H, W) of an image or a batch to ``shape`` (e.g. an image read as a sequence)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.reshape(*images.shape[:-3], *self.shape)


class InMemoryDataModule(ClassificationDataModule):
    """A classification set whose splits fit in memory as tensors (N, C, H, W), uint8 or float in [0, 1].

    Subclasses set ``native_channels``, ``native_size``, ``image_size``, ``in_channels`` and
    ``published_stats`` (or None), and implement ``_read_splits``; ``_statistics_cache`` says where the
    training split's statistics are cached (None: computed on every run, for small sets).
    """

    native_channels: int
    native_size: int
    published_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    pad: int = 0  # zero pixels added on every side of each image after resizing (``pad_to``)

    @property
    def input_shape(self) -> tuple[int, ...]:
        side = self.image_size + 2 * self.pad
        return (self.in_channels, side, side)

    def pad_to(self, field: int) -> bool:
        """Centre the images in a ``field`` x ``field`` field of zeros (before ``setup``), as LeCun et al. 1998
        centred the 28x28 MNIST digits in LeNet-5's 32x32 input; False if they do not fit it evenly."""
        margin = field - self.image_size
        if margin <= 0 or margin % 2:
            return False
        self.pad = margin // 2
        return True

    def __init__(
        self, augment: str = "none", normalize: str = "published", fast_path: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if augment not in PRESETS:
            raise ValueError(f"unknown augment {augment!r}; accepted: {', '.join(PRESETS)}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"unknown normalize {normalize!r}; accepted: {', '.join(NORMALIZATIONS)}")
        if fast_path:
            batch_augmentation(augment)  # fails early for presets with no whole-batch version
        self.augment = augment
        self.normalize = normalize
        self.fast_path = bool(fast_path)
        self.normalizer: Normalizer | None = None
        self.batch_transforms: dict[bool, v2.Compose] = {}
        self.train_loader: ResumableDataLoader | None = None
        self._resume_order: dict[str, int] | None = None

    def _read_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Images (N, C, H, W) and labels of the ``train``, ``val`` and ``test`` splits."""
        raise NotImplementedError

    def _statistics_cache(self) -> tuple[str, dict] | None:
        """Where to cache the training split's normalisation statistics and what names them; None: no cache."""
        return None

    def _resize_steps(self) -> list[Callable]:
        """Resizing and channel steps from the native images to the model's input, before normalisation."""
        steps: list[Callable] = []
        if self.image_size != self.native_size and self.augment not in SIZING_PRESETS:
            steps.append(v2.Resize([self.image_size, self.image_size], antialias=True))
        if self.in_channels != self.native_channels:
            steps.append(v2.RGB())
        if self.pad:
            steps.append(v2.Pad(self.pad))
        return steps

    def _final_steps(self) -> list[Callable]:
        """Steps after normalisation (the sequence DataModules read the image as a sequence here)."""
        return []

    def _eval_prefix(self) -> list[Callable]:
        if self.augment in SIZING_PRESETS:
            return [eval_transform(self.image_size)]
        return [v2.ToDtype(torch.float32, scale=True)]

    def _train_statistics(self, train_images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalisation statistics of the training images as the model sees them at evaluation."""
        prepare = v2.Compose([*self._eval_prefix(), *self._resize_steps()])

        def compute() -> dict[str, torch.Tensor]:
            return compute_statistics(prepare(chunk) for chunk in train_images.split(STATISTICS_CHUNK))

        cache = self._statistics_cache()
        return compute() if cache is None else cached_statistics(*cache, compute)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        splits = self._read_splits()
        train_images = splits["train"][0]
        self.normalizer = build_normalizer(
            self.normalize, self.published_stats, lambda: self._train_statistics(train_images)
        )
        after_augment = [*self._resize_steps(), self.normalizer, *self._final_steps()]
        eval_steps = v2.Compose([*self._eval_prefix(), *after_augment])
        if self.fast_path:
            to_float = v2.ToDtype(torch.float32, scale=True)
            self.batch_transforms = {
                True: v2.Compose([to_float, batch_augmentation(self.augment), *after_augment]),
                False: eval_steps,
            }
            train_steps = eval_steps = None
        else:
            size = self.image_size if self.augment in SIZING_PRESETS else self.native_size
            train_steps = v2.Compose([train_transform(self.augment, size), *after_augment])
        self.train_set = TensorImageDataset(*splits["train"], train_steps)
        self.val_set = TensorImageDataset(*splits["val"], eval_steps)
        self.test_set = TensorImageDataset(*splits["test"], eval_steps)

    def _data_device(self) -> torch.device:
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if not self.fast_path:
            return super()._loader(dataset, shuffle)
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its data loaders are used")
        device = self._data_device()
        dataset.images, dataset.labels = dataset.images.to(device), dataset.labels.to(device)
        indices = range(len(dataset))  # Lightning shards them over the processes of a distributed run
        arguments = {
            "batch_size": self.batch_size,
            "collate_fn": GatherBatch(dataset),
            "pin_memory": self.pin_memory and device.type == "cpu",
        }
        if not shuffle:
            return DataLoader(indices, sampler=evaluation_sampler(self, indices), **arguments)
        if self.trainer is not None and self.trainer.world_size > 1:
            return DataLoader(indices, shuffle=True, **arguments)  # Lightning gives each process a DistributedSampler
        # one process: an order that a resumed run continues; the iterator's base seed (for workers, which the fast
        # path has none of) from a generator of its own, so that starting an epoch draws nothing from the global
        # random state
        self.train_loader = ResumableDataLoader(
            indices,
            sampler=ResumableSampler(len(dataset)),
            generator=torch.Generator(),
            progress=self._progress,
            **arguments,
        )
        if self._resume_order:
            self.train_loader.load_state_dict(self._resume_order)
            self._resume_order = None
        return self.train_loader

    def _progress(self) -> tuple[int, int]:
        """Where training stands, as (epoch, examples of it whose step has run); after an epoch's last batch, the
        next epoch's start."""
        trainer = self.trainer
        progress = trainer.fit_loop.epoch_loop.batch_progress
        if progress.is_last_batch:
            return trainer.current_epoch + 1, 0
        return trainer.current_epoch, progress.current.processed * self.batch_size

    def state_dict(self) -> dict[str, Any]:
        """The training order's state (the train loader's), kept with the DataModule's as well: Lightning restores
        a stateful loader only when it resumes in the middle of an epoch, but a DataModule from every checkpoint,
        so that a run resumed at an epoch's end also goes on with the order's seed and the next epoch."""
        state = self.train_loader.state_dict() if self.train_loader is not None else {}
        return {"train_order": state} if state else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_order = state_dict.get("train_order")

    def batch_transform(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        """The fast path's work on a gathered batch: to float, augment (training only), resize, normalise."""
        self.normalizer.to(images.device)
        return self.batch_transforms[train](images)

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int) -> tuple:
        if not self.fast_path:
            return batch
        images, labels = batch
        return self.batch_transform(images, train=self.trainer.training), labels
