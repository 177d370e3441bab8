import pytest
import torch

from conftest import model_inputs
from data import DigitsDataModule


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    datamodule = DigitsDataModule(batch_size=16, augment="none")
    datamodule.setup()
    return datamodule


def test_split_sizes_cover_all_1797_images(digits: DigitsDataModule) -> None:
    sizes = [len(digits.train_set), len(digits.val_set), len(digits.test_set)]
    assert sum(sizes) == 1797
    assert sizes == [1257, 180, 360]


def test_metadata(digits: DigitsDataModule) -> None:
    assert digits.num_classes == 10
    assert digits.class_names == [str(d) for d in range(10)]
    assert digits.input_shape == (1, 32, 32)


@pytest.mark.parametrize("fast_path", [True, False])
def test_batches_are_normalised_images_and_labels(fast_path: bool) -> None:
    datamodule = DigitsDataModule(batch_size=16, augment="none", fast_path=fast_path)
    datamodule.setup()
    images, labels = model_inputs(datamodule, "train")
    assert images.shape == (1257, 1, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.long and labels.min() >= 0 and labels.max() <= 9
    assert abs(images.mean().item()) < 1e-3
    assert abs(images.std().item() - 1) < 1e-2


def test_both_paths_give_the_model_the_same_evaluation_inputs() -> None:
    fast, per_image = (DigitsDataModule(fast_path=flag, num_workers=0) for flag in (True, False))
    fast.setup()
    per_image.setup()
    fast_images, fast_labels = model_inputs(fast, "test")
    images, labels = model_inputs(per_image, "test")
    assert torch.equal(fast_labels, labels)
    torch.testing.assert_close(fast_images, images)


def test_split_is_stratified_and_independent_of_the_torch_seed(digits: DigitsDataModule) -> None:
    torch.manual_seed(123)
    again = DigitsDataModule(augment="none")
    again.setup()
    assert torch.equal(again.test_set.labels, digits.test_set.labels)
    counts = torch.bincount(digits.test_set.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of ~180 per class


@pytest.mark.parametrize("fast_path", [True, False])
def test_augmentation_changes_training_images_only(fast_path: bool) -> None:
    datamodule = DigitsDataModule(augment="mnist", fast_path=fast_path, num_workers=0, batch_size=2000)
    datamodule.setup()
    train_once, labels_once = model_inputs(datamodule, "train")
    train_again, labels_again = model_inputs(datamodule, "train")
    order_once, order_again = labels_once.argsort(stable=True), labels_again.argsort(stable=True)
    assert not torch.allclose(train_once.sum(dim=(1, 2, 3)).sort().values, train_again.sum(dim=(1, 2, 3)).sort().values)
    assert torch.equal(labels_once[order_once], labels_again[order_again])
    assert torch.equal(model_inputs(datamodule, "test")[0], model_inputs(datamodule, "test")[0])


def test_three_channels_repeat_the_grey_image() -> None:
    datamodule = DigitsDataModule(in_channels=3, augment="none")
    datamodule.setup()
    image = model_inputs(datamodule, "test")[0][0]
    assert image.shape == (3, 32, 32)
    assert torch.equal(image[0], image[2])


@pytest.mark.parametrize("normalize", ["mean_image", "none"])
def test_other_normalisations(normalize: str) -> None:
    datamodule = DigitsDataModule(augment="none", normalize=normalize)
    datamodule.setup()
    images, _ = model_inputs(datamodule, "train")
    if normalize == "mean_image":  # every pixel of the training split averages to zero
        assert images.mean(dim=0).abs().max() < 1e-5 and images.std() < 0.6
    else:
        assert images.min() >= 0 and images.max() <= 1 and images.mean() > 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 5}, "num_classes=5 was given, but DigitsDataModule has 10 classes"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"in_channels": 2}, "in_channels must be 1 or 3"),
        ({"image_size": 4}, "image_size must be an integer of at least 8"),
        ({"val_fraction": 0.5, "test_fraction": 0.6}, "sum to less than 1"),
        ({"augment": "autoaugment"}, "unknown augment 'autoaugment'; accepted: none, cifar, mnist, alexnet"),
        ({"augment": "vgg"}, "augmentation 'vgg' has no whole-batch version"),
        ({"normalize": "zscore"}, "unknown normalize 'zscore'; accepted: published, computed, mean_image, none"),
        ({"num_workers": -1}, "num_workers must be a non-negative integer or null"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DigitsDataModule(**kwargs)


def test_published_normalisation_is_refused_at_setup_for_digits() -> None:
    datamodule = DigitsDataModule(normalize="published")
    with pytest.raises(ValueError, match="no published mean and std; accepted normalize: computed, mean_image, none"):
        datamodule.setup()
