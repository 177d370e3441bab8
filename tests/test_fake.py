import pytest
import torch

from data import FakeDataModule


def test_splits_have_the_asked_sizes_shapes_and_classes() -> None:
    datamodule = FakeDataModule(num_classes=7, image_size=40, in_channels=1, train_size=6, val_size=4, test_size=3)
    datamodule.setup()
    assert [len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)] == [6, 4, 3]
    image, label = datamodule.train_set[0]
    assert image.shape == (1, 40, 40) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1  # normalised from [0, 1] with mean and std 0.5
    assert 0 <= label < 7
    assert datamodule.input_shape == (1, 40, 40) and datamodule.num_classes == 7


def test_images_repeat_exactly_and_splits_do_not_share_images() -> None:
    first, second = FakeDataModule(train_size=4, val_size=4), FakeDataModule(train_size=4, val_size=4)
    first.setup()
    second.setup()
    assert torch.equal(first.train_set[2][0], second.train_set[2][0])
    assert not torch.equal(first.train_set[0][0], first.val_set[0][0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_channels": 2}, "in_channels must be 1 or 3"),
        ({"image_size": 0}, "image_size must be a positive integer"),
        ({"train_size": 0}, "train_size must be a positive integer"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FakeDataModule(**kwargs)
