"""The per-image augmentation presets and evaluation crops (data/augment.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from data.augment import (
    EVAL_CROPS,
    IMAGENET_PCA_EIGVAL,
    IMAGENET_PCA_EIGVEC,
    PRESETS,
    SIZING_PRESETS,
    PCALighting,
    eval_transform,
    scaled,
    train_transform,
)


def photo(height: int = 300, width: int = 400) -> Image.Image:
    """A random RGB picture of a size other than the crop, as an image folder holds."""
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))


def preset_input(preset: str) -> tuple[Image.Image | torch.Tensor, int]:
    """What each kind of preset is given: any-size photos for sizing presets, native 32x32 tensors otherwise."""
    if preset in SIZING_PRESETS:
        return photo(), 64
    return torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)), 32


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_gives_the_size_and_range_and_is_random_but_repeatable(preset: str) -> None:
    image, size = preset_input(preset)
    transform = train_transform(preset, size)
    torch.manual_seed(0)
    first, second = transform(image), transform(image)
    torch.manual_seed(0)
    repeated = transform(image)
    for output in (first, second):
        assert output.shape == (3, size, size) and output.dtype == torch.float32
        assert output.min() >= 0 and output.max() <= 1
    assert torch.equal(first, repeated)  # the same seed repeats
    if preset == "none":
        assert torch.equal(first, second)
        torch.testing.assert_close(first.as_subclass(torch.Tensor), image.float() / 255)
    else:
        assert not torch.equal(first, second)  # two calls differ


def test_size_keeping_presets_keep_a_grey_image_grey() -> None:
    digit = torch.rand(1, 28, 28)
    for preset in ("none", "cifar", "mnist"):
        assert train_transform(preset, 28)(digit).shape == (1, 28, 28)


def test_vgg_scale_jittering_draws_the_shorter_side_from_256_to_512_for_224() -> None:
    assert [scaled(224, ratio) for ratio in (256 / 224, 512 / 224)] == [256, 512]
    shortest = train_transform("vgg", 224).transforms[1]
    assert min(shortest.min_size) == 256 and max(shortest.min_size) == 512 and len(shortest.min_size) == 257


def test_alexnet_crops_224_from_the_image_resized_to_256() -> None:
    steps = train_transform("alexnet", 224).transforms
    assert steps[1].size == [256] and steps[2].size == (224, 224)


def test_inception_crops_8_to_100_percent_of_the_area_at_aspect_3_4_to_4_3() -> None:
    crop = train_transform("inception", 224).transforms[1]
    assert crop.scale == (0.08, 1.0) and crop.ratio == pytest.approx((3 / 4, 4 / 3))


def test_pca_lighting_adds_one_colour_shift_along_the_eigenvectors() -> None:
    image = torch.full((3, 8, 8), 0.5)
    torch.manual_seed(3)
    shifted = PCALighting()(image)
    torch.manual_seed(3)
    alpha = torch.randn(3) * 0.1
    expected = torch.tensor(IMAGENET_PCA_EIGVEC) @ (alpha * torch.tensor(IMAGENET_PCA_EIGVAL))
    shift = shifted - image
    torch.testing.assert_close(shift, expected.view(3, 1, 1).expand(3, 8, 8))  # the same for every pixel
    assert shift.abs().max() > 0


@pytest.mark.parametrize("crop", EVAL_CROPS)
def test_eval_transforms_are_deterministic(crop: str) -> None:
    image = photo(100, 80)
    transform = eval_transform(64, crop)
    output = transform(image)
    assert torch.equal(output, transform(image))
    expected_shape = (3, 64, 64) if crop == "center" else (10, 3, 64, 64)
    assert output.shape == expected_shape and output.min() >= 0 and output.max() <= 1


def test_ten_crop_holds_the_centre_crop_and_the_mirror_images() -> None:
    image = photo(96, 64)  # resized to 64 on the shorter side: even margins around the 56 centre crop
    crops = eval_transform(56, "ten_crop")(image)
    torch.testing.assert_close(crops[4], eval_transform(56, "center")(image))
    torch.testing.assert_close(crops[9], crops[4].flip(-1))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: train_transform("autoaugment", 32), "unknown augmentation 'autoaugment'; accepted: none, cifar"),
        (lambda: train_transform("alexnet"), "augmentation 'alexnet' crops to image_size, which was not given"),
        (lambda: eval_transform(32, "five_crop"), "unknown eval crop 'five_crop'; accepted: center, ten_crop"),
    ],
)
def test_unknown_names_list_the_accepted_ones(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
