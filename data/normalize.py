"""Input normalisation: published constants, statistics of the training split (cached), or the mean image.

``normalize`` in a data config picks one of:

* ``published``: the per-channel mean and standard deviation published for the data set (ImageNet's for
  image folders, the usual choice for one's own photos and for pretrained weights);
* ``computed``: the per-channel mean and standard deviation of the training split itself, computed once
  and cached beside the data (``<data_dir>/.classicnets-stats/``) so later runs read them back;
* ``mean_image``: subtract the training split's mean image, pixel by pixel, as AlexNet (Krizhevsky et al.
  2012, Sec. 2: "subtracting the mean activity over the training set from each pixel") and ZFNet did;
* ``none``: images stay in [0, 1].
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from models import load_file

NORMALIZATIONS = ("published", "computed", "mean_image", "none")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CACHE_DIR = ".classicnets-stats"


class Normalizer(nn.Module):
    """``(x - mean) / std`` with ``mean`` and ``std`` of shape (C, 1, 1) or (C, H, W).

    Broadcasts over an image (C, H, W), a batch (B, C, H, W) or a batch of crops (B, K, C, H, W);
    ``.to(device)`` moves it to the batches' device.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        mean, std = (torch.as_tensor(value, dtype=torch.float32) for value in (mean, std))
        self.register_buffer("mean", mean.view(-1, 1, 1) if mean.ndim == 1 else mean)
        self.register_buffer("std", std.view(-1, 1, 1) if std.ndim == 1 else std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


def compute_statistics(batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-channel mean and standard deviation, and the mean image, of float image batches (B, C, H, W).

    Streams over the batches with float64 sums, so the whole split never has to be in memory at once.
    """
    count = 0
    pixel_sum = pixel_square_sum = None
    for batch in batches:
        batch = batch.to(torch.float64)
        if pixel_sum is None:
            pixel_sum = torch.zeros(batch.shape[1:], dtype=torch.float64)
            pixel_square_sum = torch.zeros(batch.shape[1:], dtype=torch.float64)
        pixel_sum += batch.sum(dim=0)
        pixel_square_sum += batch.square().sum(dim=0)
        count += batch.shape[0]
    if pixel_sum is None:
        raise ValueError("no training images to compute normalisation statistics from")
    pixels_per_channel = count * pixel_sum[0].numel()
    mean = pixel_sum.sum(dim=(1, 2)) / pixels_per_channel
    variance = pixel_square_sum.sum(dim=(1, 2)) / pixels_per_channel - mean.square()
    return {
        "mean": mean.float(),
        "std": variance.clamp_min(0).sqrt().float(),
        "mean_image": (pixel_sum / count).float(),
        "count": torch.tensor(count),
    }


def cached_statistics(
    data_dir: str | Path, key: dict, compute: Callable[[], dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """Statistics for the split described by ``key``: read from the cache beside the data, else computed and saved.

    The cache file's name is a hash of ``key`` (data set, split sizes and seed, image size), so a change to
    any of them computes afresh. A read-only data directory only costs the computation on every run.
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(data_dir) / CACHE_DIR / f"{key.get('dataset', 'data')}-{digest}.pt"
    if path.is_file():
        try:
            return load_file(path, "statistics")
        except ValueError:
            pass  # a damaged cache is computed again and replaced
    statistics = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        torch.save(statistics, temporary)
        temporary.replace(path)
    except OSError as err:
        warnings.warn(f"could not cache normalisation statistics in {path.parent}: {err}", stacklevel=2)
    return statistics


def build_normalizer(
    kind: str,
    published: tuple[tuple[float, ...], tuple[float, ...]] | None,
    statistics: Callable[[], dict[str, torch.Tensor]],
) -> Normalizer:
    """The ``kind`` of normalisation; ``statistics`` is only called (and the split read) when it is needed."""
    if kind not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {kind!r}; accepted: {', '.join(NORMALIZATIONS)}")
    if kind == "published":
        if published is None:
            accepted = ", ".join(name for name in NORMALIZATIONS if name != "published")
            raise ValueError(f"this data set has no published mean and std; accepted normalize: {accepted}")
        return Normalizer(torch.tensor(published[0]), torch.tensor(published[1]))
    if kind == "none":
        return Normalizer(torch.zeros(1), torch.ones(1))
    values = statistics()
    if kind == "computed":
        return Normalizer(values["mean"], values["std"])
    return Normalizer(values["mean_image"], torch.ones(1))
