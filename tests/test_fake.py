import pytest
import torch

from conftest import model_inputs
from data import FakeDataModule


@pytest.mark.parametrize("fast_path", [True, False])
def test_splits_have_the_asked_sizes_shapes_and_classes(fast_path: bool) -> None:
    datamodule = FakeDataModule(
        num_classes=7, image_size=40, in_channels=1, train_size=6, val_size=4, test_size=3, batch_size=4,
        fast_path=fast_path, num_workers=0,
    )  # fmt: skip
    datamodule.setup()
    assert [len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)] == [6, 4, 3]
    images, labels = model_inputs(datamodule, "val")
    assert images.shape == (4, 1, 40, 40) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1  # normalised from [0, 1] with mean and std 0.5
    assert images.min() < -0.9 and images.max() > 0.9  # uniform over the whole range
    assert ((labels >= 0) & (labels < 7)).all()
    assert datamodule.input_shape == (1, 40, 40) and datamodule.num_classes == 7


def test_both_paths_give_the_same_evaluation_inputs() -> None:
    fast, per_image = (FakeDataModule(fast_path=flag, num_workers=0, val_size=8, batch_size=4) for flag in (1, 0))
    fast.setup()
    per_image.setup()
    for split in ("val", "test"):
        torch.testing.assert_close(model_inputs(fast, split), model_inputs(per_image, split))


def test_images_repeat_exactly_and_splits_do_not_share_images() -> None:
    first, second = FakeDataModule(train_size=4, val_size=4), FakeDataModule(train_size=4, val_size=4)
    first.setup()
    second.setup()
    assert torch.equal(first.train_set.images, second.train_set.images)
    assert torch.equal(first.train_set.labels, second.train_set.labels)
    assert not torch.equal(first.train_set.images, first.val_set.images)


def test_cifar_shaped_training_with_cifar_augmentation_keeps_shapes() -> None:
    datamodule = FakeDataModule(train_size=45, batch_size=16, augment="cifar", normalize="mean_image")
    datamodule.setup()
    images, labels = model_inputs(datamodule, "train")
    assert images.shape == (45, 3, 32, 32) and labels.shape == (45,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_channels": 2}, "in_channels must be 1 or 3"),
        ({"image_size": 0}, "image_size must be a positive integer"),
        ({"train_size": 0}, "train_size must be a positive integer"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
        ({"augment": "vgg"}, "no whole-batch version"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FakeDataModule(**kwargs)
