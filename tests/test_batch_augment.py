"""The whole-batch augmentations against torchvision.transforms.v2 applied image by image."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from data.augment import CIFAR_PADDING, MNIST_AFFINE, SIZE_KEEPING_PRESETS, SIZING_PRESETS, train_transform
from data.batch_augment import (
    _affine,
    _crop,
    _sample_affine_params,
    batch_augmentation,
    random_affine,
    random_crop,
    random_hflip,
)

NEEDS_CUDA = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
DEVICES = ["cpu", pytest.param("cuda", marks=NEEDS_CUDA)]


def _affine_reference(images: torch.Tensor, angle: torch.Tensor, shift: torch.Tensor, factor: torch.Tensor):
    """``TF.affine`` image by image, with the parameters as the Python numbers v2.RandomAffine passes it."""
    return torch.stack(
        [
            TF.affine(
                image,
                angle=a.item(),
                translate=[int(s) for s in t.tolist()],
                scale=f.item(),
                shear=[0.0, 0.0],
            )
            for image, a, t, f in zip(images, angle, shift, factor, strict=True)
        ]
    )


def _crop_offsets(crops: torch.Tensor, padding: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Recover (top, left) of crops cut from an all-ones image from how many zero rows and columns they show."""
    height, width = crops.shape[-2:]
    rows = crops.amax(dim=(1, 3)) > 0  # (B, H): rows that came from the image, not the padding
    cols = crops.amax(dim=(1, 2)) > 0
    zeros_top = rows.int().argmax(dim=1)
    zeros_bottom = height - rows.sum(dim=1) - zeros_top
    zeros_left = cols.int().argmax(dim=1)
    zeros_right = width - cols.sum(dim=1) - zeros_left
    return padding - zeros_top + zeros_bottom, padding - zeros_left + zeros_right


# random_crop


def test_crop_at_given_offsets_matches_torchvision_pad_then_crop():
    padding, height, width = 3, 10, 13
    offsets = [(top, left) for top in range(2 * padding + 1) for left in range(2 * padding + 1)]
    images = torch.rand(len(offsets), 3, height, width)
    top, left = (torch.tensor(column) for column in zip(*offsets, strict=True))
    crops = _crop(images, padding, top, left)
    for image, crop, (t, le) in zip(images, crops, offsets, strict=True):
        torch.testing.assert_close(crop, TF.crop(TF.pad(image, [padding]), t, le, height, width), rtol=0, atol=0)


def test_crop_offset_recovery_reads_back_the_offsets():
    padding = CIFAR_PADDING
    top, left = torch.randint(0, 2 * padding + 1, (2, 200))
    crops = _crop(torch.ones(200, 1, 12, 12), padding, top, left)
    recovered_top, recovered_left = _crop_offsets(crops, padding)
    assert torch.equal(recovered_top, top) and torch.equal(recovered_left, left)


def test_random_crop_offsets_cover_all_values_uniformly_and_independently():
    padding, samples = CIFAR_PADDING, 9000
    torch.manual_seed(0)
    crops = random_crop(torch.ones(samples, 1, 12, 12), padding)
    top, left = _crop_offsets(crops, padding)
    values = 2 * padding + 1
    expected = samples / values
    for offset in (top, left):
        counts = torch.bincount(offset, minlength=values)
        assert len(counts) == values  # nothing outside 0..2p
        assert ((counts - expected).abs() < 0.15 * expected).all(), counts
    pairs = torch.bincount(top * values + left, minlength=values * values)
    assert (pairs > 0).all()  # every (top, left) combination occurs: the two offsets are drawn separately


@pytest.mark.parametrize("device", DEVICES)
def test_random_crop_keeps_shape_dtype_device_and_range(device):
    images = torch.rand(8, 3, 32, 32, device=device)
    crops = random_crop(images, CIFAR_PADDING)
    assert crops.shape == images.shape and crops.dtype == images.dtype and crops.device == images.device
    assert crops.min() >= 0 and crops.max() <= 1
    assert (crops == 0).any()  # some zero padding shows (each crop has a zero border unless both offsets are p)


# random_hflip


def test_random_hflip_gives_the_image_or_its_mirror_about_half_the_time():
    images = torch.rand(4000, 2, 5, 7)
    flipped = random_hflip(images)
    same = (flipped == images).flatten(1).all(dim=1)
    mirrored = (flipped == images.flip(-1)).flatten(1).all(dim=1)
    assert (same ^ mirrored).all()
    assert 0.45 < mirrored.float().mean() < 0.55


def test_random_hflip_edge_probabilities():
    images = torch.rand(64, 1, 4, 6)
    assert torch.equal(random_hflip(images, p=0.0), images)
    assert torch.equal(random_hflip(images, p=1.0), images.flip(-1))


# random_affine


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 20, 27)])
@pytest.mark.parametrize("ranges", [MNIST_AFFINE, {"degrees": 30.0, "translate": (0.2, 0.3), "scale": (0.6, 1.4)}])
def test_affine_matches_torchvision_affine_image_by_image(shape, ranges):
    torch.manual_seed(1)
    images = torch.rand(200, *shape)
    angle, shift, factor = _sample_affine_params(images, **ranges)
    out = _affine(images, angle, shift, factor)
    torch.testing.assert_close(out, _affine_reference(images, angle, shift, factor), rtol=0, atol=0)


def test_affine_pure_shifts_match_torchvision_and_identity_returns_the_input():
    images = torch.rand(4, 3, 9, 11)
    shift = torch.tensor([[0.0, 0.0], [2.0, -1.0], [-3.0, 4.0], [11.0, 0.0]])
    angle, factor = torch.zeros(4), torch.ones(4)
    out = _affine(images, angle, shift, factor)
    torch.testing.assert_close(out, _affine_reference(images, angle, shift, factor), rtol=0, atol=0)
    assert torch.equal(out[0], images[0])
    # +2 in x moves the content right, -1 in y moves it up; what comes in from outside is zero fill
    assert torch.equal(out[1, :, :-1, 2:], images[1, :, 1:, :-2])
    assert (out[1, :, -1] == 0).all() and (out[1, :, :, :2] == 0).all()
    assert torch.equal(out[3], torch.zeros(3, 9, 11))  # shifted a whole width: nothing left but fill


def test_sampled_affine_parameters_lie_in_their_ranges():
    torch.manual_seed(2)
    images = torch.zeros(5000, 1, 20, 30)  # translate (0.1, 0.2) of W=30, H=20: shifts up to 3 and 4 pixels
    angle, shift, factor = _sample_affine_params(images, degrees=10.0, translate=(0.1, 0.2), scale=(0.9, 1.1))
    assert angle.abs().max() <= 10 and angle.min() < -9.5 and angle.max() > 9.5
    assert 0.9 <= factor.min() < 0.91 and 1.09 < factor.max() <= 1.1
    assert torch.equal(shift, shift.round())
    assert set(shift[:, 0].int().tolist()) == set(range(-3, 4))
    assert set(shift[:, 1].int().tolist()) == set(range(-4, 5))


def test_random_affine_with_one_image_repeats_v2_random_affine_under_the_same_seed():
    # For a batch of one the draws come in v2's order (angle, dx, dy, scale), so the results are identical.
    image = torch.rand(1, 28, 28)
    for seed in range(20):
        torch.manual_seed(seed)
        ours = random_affine(image[None], **MNIST_AFFINE)[0]
        torch.manual_seed(seed)
        assert torch.equal(ours, v2.RandomAffine(**MNIST_AFFINE)(image))


@pytest.mark.parametrize("device", DEVICES)
def test_random_affine_keeps_shape_dtype_device_and_range(device):
    images = torch.rand(16, 1, 28, 28, device=device)
    out = random_affine(images, **MNIST_AFFINE)
    assert out.shape == images.shape and out.dtype == images.dtype and out.device == images.device
    assert out.min() >= 0 and out.max() <= 1


# randomness


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("preset", ["cifar", "mnist"])
def test_calls_differ_and_a_seeded_generator_repeats(preset, device):
    augment = batch_augmentation(preset)
    images = torch.rand(64, 3, 32, 32, device=device)
    assert not torch.equal(augment(images), augment(images))
    first = augment(images, torch.Generator().manual_seed(7))
    second = augment(images, torch.Generator().manual_seed(7))
    assert torch.equal(first, second)
    torch.manual_seed(3)
    first = augment(images)
    torch.manual_seed(3)
    assert torch.equal(first, augment(images))


def test_samples_in_one_batch_get_their_own_parameters():
    copies = torch.ones(64, 1, 12, 12)
    top, left = _crop_offsets(random_crop(copies, CIFAR_PADDING), CIFAR_PADDING)
    assert len(set(zip(top.tolist(), left.tolist(), strict=True))) > 20
    image = torch.rand(1, 1, 4, 4)
    unflipped = (random_hflip(image.expand(64, -1, -1, -1)) == image).flatten(1).all(dim=1)
    assert unflipped.any() and not unflipped.all()
    angle, shift, factor = _sample_affine_params(copies, **MNIST_AFFINE)
    assert len(set(angle.tolist())) == 64 and len(set(factor.tolist())) == 64 and len(torch.unique(shift, dim=0)) >= 5
    distinct = torch.unique(random_affine(torch.rand(1, 1, 28, 28).expand(64, -1, -1, -1), **MNIST_AFFINE), dim=0)
    assert len(distinct) == 64


# batch_augmentation


@pytest.mark.parametrize("preset", SIZE_KEEPING_PRESETS)
def test_each_size_keeping_preset_keeps_shape_and_range(preset):
    images = torch.rand(8, 3, 32, 32)
    out = batch_augmentation(preset)(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, images) == (preset == "none")


@pytest.mark.parametrize("preset", [*SIZING_PRESETS, "bogus"])
def test_other_presets_have_no_batch_version(preset):
    with pytest.raises(ValueError, match=r"has no whole-batch version; accepted with fast_path: none, cifar, mnist \("):
        batch_augmentation(preset)


def test_cifar_with_one_image_repeats_the_per_image_preset_under_the_same_seed():
    # Crop top, crop left, flip: for a batch of one the draws come in v2's order, so the pixels are identical.
    per_image = train_transform("cifar", 32)
    image = torch.rand(3, 32, 32)
    for seed in range(20):
        torch.manual_seed(seed)
        ours = batch_augmentation("cifar")(image[None])[0]
        torch.manual_seed(seed)
        assert torch.equal(ours, per_image(image))


def test_cifar_per_pixel_mean_matches_the_per_image_path():
    """Average many augmented copies of one image; the two paths must give the same per-pixel mean.

    The image is a bright horizontal ramp, so the mean shows both the flips (it evens out left and right)
    and the padding (how far the zero border bleeds in). With 4000 copies a path's per-pixel mean has a
    standard error below 0.01; the check itself must tell padding 2 or no flips apart at the same tolerance.
    """
    copies, tolerance = 4000, 0.05
    ramp = 0.5 + 0.5 * torch.linspace(0, 1, 32)
    image = ramp.expand(3, 32, 32).clone()
    torch.manual_seed(4)
    per_image = train_transform("cifar", 32)
    reference = torch.stack([per_image(image) for _ in range(copies)]).mean(dim=0)
    batch = image.expand(copies, -1, -1, -1)

    def gap(augmented: torch.Tensor) -> float:
        return (augmented.mean(dim=0) - reference).abs().max().item()

    assert gap(batch_augmentation("cifar")(batch)) < tolerance
    assert gap(random_hflip(random_crop(batch, padding=2))) > 2 * tolerance
    assert gap(random_crop(batch, CIFAR_PADDING)) > 2 * tolerance


@pytest.mark.slow
def test_benchmark_script_times_both_paths(tmp_path) -> None:
    from conftest import run_script

    result = run_script("benchmark_data.py", "batches=2", "batch=8", "rounds=1", "workers=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(("| per-image", "| fast path"))]
    assert len(rows) == 2 and "fast path / per-image:" in result.stdout
    bad = run_script("benchmark_data.py", "rounds=many", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: expected key=positive integer")
