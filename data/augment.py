"""The papers' augmentations as named presets, built from torchvision.transforms.v2.

Two kinds of preset:

* size-keeping presets, applied at the data set's own size: ``none``; ``cifar``, He et al. 2016
  (Sec. 4.2): pad 4 pixels with zeros, take a random 32x32 crop, flip horizontally with probability
  1/2; ``mnist``: a small random affine distortion (rotation up to 10 degrees, shift up to 10%, scale
  0.9-1.1), the kind LeCun et al. 1998 (Sec. V.B) used to bring LeNet-5's MNIST error from 0.95% to 0.8%.
* sizing presets, which turn an image of any size into ``image_size`` x ``image_size``:
  ``alexnet``, Krizhevsky et al. 2012 (Sec. 4.1): rescale the shorter side to 256, take a random
  224x224 crop, flip, and add PCA colour noise (alpha ~ N(0, 0.1) along the RGB eigenvectors of the
  ImageNet pixels); ``vgg``, Simonyan & Zisserman 2015 (Sec. 3.1): the same, with the shorter side
  drawn from S in [256, 512] for each image (scale jittering); ``inception``, Szegedy et al. 2015
  (Sec. 6): a random crop of 8%-100% of the area with aspect ratio 3/4-4/3, resized, and flipped.
  For an ``image_size`` other than 224 the side lengths scale with it (256/224 and 512/224 of it).

Evaluation resizes the shorter side to 256/224 of ``image_size`` and takes the centre crop
(``center``), or AlexNet's ten crops (``ten_crop``: the four corners and the centre, and their mirror
images), whose softmax outputs the classifier averages.

Every transform returns a float tensor in [0, 1]; normalisation comes after, from ``data.normalize``.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

SIZE_KEEPING_PRESETS = ("none", "cifar", "mnist")
SIZING_PRESETS = ("alexnet", "vgg", "inception")
PRESETS = SIZE_KEEPING_PRESETS + SIZING_PRESETS
EVAL_CROPS = ("center", "ten_crop")

CIFAR_PADDING = 4  # He et al. 2016, Sec. 4.2
MNIST_AFFINE = {"degrees": 10.0, "translate": (0.1, 0.1), "scale": (0.9, 1.1)}
RESIZE_RATIO = 256 / 224  # shorter side before cropping, relative to the crop (AlexNet, VGG single scale)
VGG_SCALE_RANGE = (256 / 224, 512 / 224)  # S_min, S_max relative to the crop (VGG Sec. 3.1)
INCEPTION_AREA = (0.08, 1.0)  # GoogLeNet Sec. 6
INCEPTION_ASPECT = (3 / 4, 4 / 3)

# Eigenvalues and eigenvectors (columns) of the covariance of ImageNet's RGB pixel values in [0, 1],
# as released with fb.resnet.torch and used in torchvision's and timm's references.
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
ALEXNET_PCA_STD = 0.1  # Sec. 4.1: "alpha_i drawn from a Gaussian with mean zero and standard deviation 0.1"


class PCALighting(v2.Transform):
    """AlexNet's colour augmentation: add ``[p1, p2, p3] [a1*l1, a2*l2, a3*l3]^T`` to every RGB pixel.

    ``p_i`` and ``l_i`` are the eigenvectors and eigenvalues of the 3x3 RGB covariance, ``a_i`` is drawn
    from N(0, ``alpha_std``) once per image (Krizhevsky et al. 2012, Sec. 4.1). Takes float images in [0, 1].
    """

    def __init__(
        self,
        alpha_std: float = ALEXNET_PCA_STD,
        eigval: tuple[float, ...] = IMAGENET_PCA_EIGVAL,
        eigvec: tuple[tuple[float, ...], ...] = IMAGENET_PCA_EIGVEC,
    ) -> None:
        super().__init__()
        self.alpha_std = alpha_std
        self.register_buffer("eigval", torch.tensor(eigval), persistent=False)
        self.register_buffer("eigvec", torch.tensor(eigvec), persistent=False)

    def make_params(self, flat_inputs: list) -> dict:
        return {"alpha": torch.randn(3) * self.alpha_std}

    def transform(self, inpt: torch.Tensor, params: dict) -> torch.Tensor:
        if not (isinstance(inpt, torch.Tensor) and inpt.is_floating_point() and inpt.shape[-3] == 3):
            return inpt  # labels and other non-image inputs pass through
        rgb_shift = self.eigvec @ (params["alpha"] * self.eigval)
        return tv_tensors.wrap((inpt + rgb_shift.view(3, 1, 1)).clamp(0, 1), like=inpt)


def stack_crops(crops: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """TenCrop's ten images as one (10, C, H, W) tensor."""
    return torch.stack(crops)


def _to_float() -> list[v2.Transform]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]


def scaled(image_size: int, ratio: float) -> int:
    """A side length ``ratio`` times ``image_size``, rounded (256 for 224 at 256/224)."""
    return round(image_size * ratio)


def train_transform(preset: str, image_size: int | None = None) -> v2.Compose:
    """The training augmentation ``preset``; sizing presets need the output ``image_size``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation {preset!r}; accepted: {', '.join(PRESETS)}")
    if preset in (*SIZING_PRESETS, "cifar") and not image_size:
        raise ValueError(f"augmentation {preset!r} crops to image_size, which was not given")
    steps: list[v2.Transform]
    if preset == "none":
        steps = _to_float()
    elif preset == "cifar":
        steps = [*_to_float(), v2.RandomCrop(image_size, padding=CIFAR_PADDING), v2.RandomHorizontalFlip()]
    elif preset == "mnist":
        steps = [*_to_float(), v2.RandomAffine(**MNIST_AFFINE)]
    elif preset == "alexnet":
        steps = [
            v2.ToImage(),
            v2.Resize(scaled(image_size, RESIZE_RATIO), antialias=True),
            v2.RandomCrop(image_size),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            PCALighting(),
        ]
    elif preset == "vgg":
        low, high = (scaled(image_size, ratio) for ratio in VGG_SCALE_RANGE)
        steps = [
            v2.ToImage(),
            v2.RandomShortestSize(list(range(low, high + 1)), antialias=True),
            v2.RandomCrop(image_size),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            PCALighting(),
        ]
    else:  # inception
        steps = [
            v2.ToImage(),
            v2.RandomResizedCrop(image_size, scale=INCEPTION_AREA, ratio=INCEPTION_ASPECT, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
        ]
    return v2.Compose(steps)


def eval_transform(image_size: int, crop: str = "center") -> v2.Compose:
    """Resize the shorter side to 256/224 of ``image_size``, then one centre crop or AlexNet's ten crops.

    With ``ten_crop`` the result is a (10, C, H, W) tensor per image.
    """
    if crop not in EVAL_CROPS:
        raise ValueError(f"unknown eval crop {crop!r}; accepted: {', '.join(EVAL_CROPS)}")
    resize = [v2.ToImage(), v2.Resize(scaled(image_size, RESIZE_RATIO), antialias=True)]
    if crop == "center":
        return v2.Compose([*resize, v2.CenterCrop(image_size), v2.ToDtype(torch.float32, scale=True)])
    return v2.Compose([*resize, v2.TenCrop(image_size), stack_crops, v2.ToDtype(torch.float32, scale=True)])
