"""Whole-batch versions of the size-keeping augmentation presets in ``data.augment``.

The in-memory fast path keeps the whole data set in one uint8 tensor, slices batches from it and augments
each batch on its own device (CPU or CUDA) instead of each image in DataLoader workers. Every sample gets
its own random parameters, drawn from the same distribution as the per-image ``torchvision.transforms.v2``
preset, and the pixels come out as that preset would make them:

* ``cifar``, He et al. 2016 (Sec. 4.2): ``random_crop`` with ``CIFAR_PADDING`` zeros on every side, then
  ``random_hflip``; as ``v2.RandomCrop(size, padding=CIFAR_PADDING)`` and ``v2.RandomHorizontalFlip()``.
* ``mnist``, after LeCun et al. 1998 (Sec. V.B): ``random_affine`` with ``MNIST_AFFINE``; as
  ``v2.RandomAffine(**MNIST_AFFINE)`` (nearest interpolation, zero fill, rotation about the centre).
* ``none``: the images unchanged.

Images are float (B, C, H, W) tensors in [0, 1]. The random parameters (a few numbers per sample) are drawn on
the CPU, from ``generator`` if given (a CPU generator) and from torch's global CPU generator otherwise, then sent to
the images' device: so ``torch.manual_seed`` repeats a run, and a batch on the GPU is augmented exactly as the same
batch on the CPU. Sending them is a copy to the device, not a read back from it: the GPU is never waited for.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from data.augment import CIFAR_PADDING, MNIST_AFFINE, SIZE_KEEPING_PRESETS


def _uniform(low: float, high: float, size: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``size`` numbers uniform in [low, high), as ``torch.empty(size).uniform_(low, high)``, drawn on the CPU."""
    return (low + (high - low) * torch.rand(size, generator=generator)).to(device, non_blocking=True)


def _randint(high: int, size: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``size`` integers uniform in 0..high-1, drawn on the CPU."""
    return torch.randint(0, high, (size,), generator=generator).to(device, non_blocking=True)


def _crop(images: Tensor, padding: int, top: Tensor, left: Tensor) -> Tensor:
    """Pad every side with ``padding`` zeros and cut sample i's H x W window at ``(top[i], left[i])``.

    One ``gather`` over each padded plane, flattened: pixel (y, x) of sample i's window sits at
    ``(top[i] + y) * padded_width + left[i] + x`` (several times faster than 4-D advanced indexing).
    """
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    padded_width = width + 2 * padding
    device = images.device
    window = torch.arange(height, device=device).view(height, 1) * padded_width + torch.arange(width, device=device)
    start = top * padded_width + left
    index = (start.view(batch, 1, 1) + window.view(1, 1, -1)).expand(batch, channels, -1)
    return padded.flatten(2).gather(2, index).view(batch, channels, height, width)


def random_crop(images: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """``v2.RandomCrop(size=(H, W), padding=padding)`` for each sample: zero padding, offsets uniform in 0..2p."""
    batch = images.shape[0]
    top = _randint(2 * padding + 1, batch, generator, images.device)
    left = _randint(2 * padding + 1, batch, generator, images.device)
    return _crop(images, padding, top, left)


def random_hflip(images: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """``v2.RandomHorizontalFlip(p)`` for each sample."""
    flip = _uniform(0, 1, images.shape[0], generator, images.device) < p
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def _sample_affine_params(
    images: Tensor,
    degrees: float,
    translate: tuple[float, float],
    scale: tuple[float, float],
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample angle (degrees), whole-pixel shift (B, 2) as (x, y), and scale, drawn as v2.RandomAffine does."""
    batch, _, height, width = images.shape
    device = images.device
    angle = _uniform(-degrees, degrees, batch, generator, device)
    max_dx, max_dy = translate[0] * width, translate[1] * height
    shift_x = _uniform(-max_dx, max_dx, batch, generator, device).round()
    shift_y = _uniform(-max_dy, max_dy, batch, generator, device).round()
    factor = _uniform(scale[0], scale[1], batch, generator, device)
    return angle, torch.stack([shift_x, shift_y], dim=1), factor


def _affine(images: Tensor, angle: Tensor, shift: Tensor, factor: Tensor) -> Tensor:
    """Rotate sample i by ``angle[i]`` degrees about the centre, scale by ``factor[i]`` and shift by ``shift[i]``.

    Matches ``v2.functional.affine(image, angle, translate=shift, scale=factor, shear=[0, 0])``: nearest
    neighbour, zero fill. As torchvision's ``_get_inverse_affine_matrix`` (with no shear), the matrix maps an
    output pixel to the input pixel it samples, in pixel units about the image centre:
    ``p_in = A (p_out - shift)`` with ``A = [[cos, sin], [-sin, cos]] / factor``. It is built in float64, like
    torchvision's Python floats, then cast to the images' dtype.
    """
    height, width = images.shape[-2:]
    rot = torch.deg2rad(angle.double())
    cos, sin = rot.cos() / factor.double(), rot.sin() / factor.double()
    shift_x, shift_y = shift.double().unbind(dim=1)
    inverse = torch.stack(
        [
            torch.stack([cos, sin, -cos * shift_x - sin * shift_y], dim=1),
            torch.stack([-sin, cos, sin * shift_x - cos * shift_y], dim=1),
        ],
        dim=1,
    )
    # affine_grid (align_corners=False) wants the matrix in coordinates normalised to [-1, 1], p_norm = N p_pixel
    # with N = diag(2 / W, 2 / H): the pixel-unit [A | t] becomes [N A N^-1 | N t].
    to_norm = torch.tensor([2 / width, 2 / height], dtype=torch.float64, device=images.device)
    theta = inverse * to_norm.view(1, 2, 1)
    theta[:, :, :2] /= to_norm.view(1, 1, 2)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def random_affine(
    images: Tensor,
    degrees: float,
    translate: tuple[float, float],
    scale: tuple[float, float],
    generator: torch.Generator | None = None,
) -> Tensor:
    """``v2.RandomAffine(degrees, translate, scale)`` for each sample (nearest, zero fill, no shear)."""
    angle, shift, factor = _sample_affine_params(images, degrees, translate, scale, generator)
    return _affine(images, angle, shift, factor)


def _none(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return images


def _cifar(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return random_hflip(random_crop(images, CIFAR_PADDING, generator), generator=generator)


def _mnist(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return random_affine(images, **MNIST_AFFINE, generator=generator)


BATCH_AUGMENTATIONS = {"none": _none, "cifar": _cifar, "mnist": _mnist}


def batch_augmentation(preset: str) -> Callable[[Tensor, torch.Generator | None], Tensor]:
    """The whole-batch version of the size-keeping ``preset``, called as ``augment(images, generator=None)``."""
    if preset not in BATCH_AUGMENTATIONS:
        raise ValueError(
            f"augmentation {preset!r} has no whole-batch version; accepted with fast_path: "
            f"{', '.join(SIZE_KEEPING_PRESETS)} (set data.fast_path=false for the per-image path)"
        )
    return BATCH_AUGMENTATIONS[preset]
