import pytest
import torch

from data import DigitsDataModule


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    datamodule = DigitsDataModule(batch_size=16, augment=False)
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


def test_batches_are_normalised_images_and_labels(digits: DigitsDataModule) -> None:
    images, labels = next(iter(digits.train_dataloader()))
    assert images.shape == (16, 1, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.long and labels.min() >= 0 and labels.max() <= 9
    all_train = torch.stack([digits.train_set[i][0] for i in range(len(digits.train_set))])
    assert abs(all_train.mean().item()) < 1e-3
    assert abs(all_train.std().item() - 1) < 1e-2


def test_split_is_stratified_and_independent_of_the_torch_seed(digits: DigitsDataModule) -> None:
    torch.manual_seed(123)
    again = DigitsDataModule(augment=False)
    again.setup()
    assert torch.equal(again.test_set.labels, digits.test_set.labels)
    counts = torch.bincount(digits.test_set.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of ~180 per class


def test_augmentation_changes_training_images_only() -> None:
    datamodule = DigitsDataModule(augment=True)
    datamodule.setup()
    assert not torch.equal(datamodule.train_set[0][0], datamodule.train_set[0][0])
    assert torch.equal(datamodule.test_set[0][0], datamodule.test_set[0][0])


def test_three_channels_repeat_the_grey_image() -> None:
    datamodule = DigitsDataModule(in_channels=3, augment=False)
    datamodule.setup()
    image = datamodule.test_set[0][0]
    assert image.shape == (3, 32, 32)
    assert torch.equal(image[0], image[2])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 5}, "num_classes=5 was given, but DigitsDataModule has 10 classes"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"in_channels": 2}, "in_channels must be 1 or 3"),
        ({"image_size": 4}, "image_size must be an integer of at least 8"),
        ({"val_fraction": 0.5, "test_fraction": 0.6}, "sum to less than 1"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DigitsDataModule(**kwargs)
