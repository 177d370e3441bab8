"""ImageNet-style class folders, written here as tiny PNG and JPEG trees of mixed sizes and modes.

Every pixel of a class-``c`` image lies in ``[c * STEP, c * STEP + WIDTH)``, so an image's mean brightness
tells its class: a test can check that the labels stay with their images through splits, crops and skips.
"""

from __future__ import annotations

import inspect
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageFile
from test_images import write_decompression_bomb
from torchvision.datasets.folder import pil_loader
from torchvision.transforms import v2

from data.augment import PRESETS, eval_transform
from data.imagefolder import (
    IMAGENET_GREY_MEAN,
    IMAGENET_GREY_STD,
    ImageFiles,
    ImageFolderDataModule,
    UnreadableImageError,
    drop_skipped,
)
from data.normalize import CACHE_DIR, IMAGENET_MEAN, IMAGENET_STD
from training.config import accepted_arguments

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "data" / "imagefolder.yaml"
CLASSES = ["ant", "moose", "zebra"]  # written in another order below, to check that the classes are sorted
TRAIN_PER_CLASS, TEST_PER_CLASS, VAL, SIZE = 4, 2, 3, 32
STEP, WIDTH = 90, 30
# (mode, file type, (width, height)) of the files in each class folder, in turn
FILES = [("RGB", "png", (40, 36)), ("L", "jpg", (50, 44)), ("RGBA", "png", (36, 60)), ("RGB", "jpg", (64, 48))]


def _write_image(path: Path, mode: str, size: tuple[int, int], label: int, rng: np.random.Generator) -> None:
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(label * STEP, label * STEP + WIDTH, size=(size[1], size[0], channels), dtype=np.uint8)
    pixels[..., 3:] = 255  # opaque: transparent pixels would show the white they are composited over
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(path)


def write_tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", TRAIN_PER_CLASS), ("val", TEST_PER_CLASS)):
        for name in ("zebra", "ant", "moose"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                mode, kind, size = FILES[(index + CLASSES.index(name)) % len(FILES)]
                _write_image(folder / f"{name}_{index}.{kind}", mode, size, CLASSES.index(name), rng)
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "images")


@pytest.fixture
def bad_tree(tree: Path) -> tuple[Path, list[Path]]:
    """The tree with a truncated JPEG in val/ant and a text file named .png in val/zebra."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 30, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    truncated, garbage = tree / "val" / "ant" / "ant_truncated.jpg", tree / "val" / "zebra" / "zebra_garbage.png"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    garbage.write_text("not an image\n")
    return tree, [truncated, garbage]


def _make(root: Path, setup: bool = True, **kwargs) -> ImageFolderDataModule:
    settings = {"num_classes": 3, "image_size": SIZE, "val_size": VAL, "batch_size": 4, "num_workers": 0}
    datamodule = ImageFolderDataModule(data_dir=str(root), pin_memory=False, **{**settings, **kwargs})
    if setup:
        datamodule.setup()
    return datamodule


def _classes_by_brightness(images: torch.Tensor) -> list[int]:
    """The class each un-normalised image's mean brightness points to."""
    brightness = images.flatten(1).mean(dim=1) * 255
    return (brightness // STEP).long().tolist()


def _all(loader) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(loader)
    return torch.cat([images for images, _ in batches]), torch.cat([labels for _, labels in batches])


def _centre_views(paths: list[str], grey: bool = False) -> np.ndarray:
    """The files' centre views (as the statistics are taken), read directly with PIL, as float64 (N, C, H, W)."""
    transform = eval_transform(SIZE, "center")
    images = [Image.open(path).convert("RGB") for path in paths]
    return np.stack([transform(image.convert("L") if grey else image).numpy() for image in images]).astype(np.float64)


def test_classes_are_the_sorted_train_folders_and_the_splits_partition_the_files(tree: Path) -> None:
    datamodule = _make(tree)
    assert datamodule.class_names == CLASSES and datamodule.num_classes == 3
    assert datamodule.input_shape == (3, SIZE, SIZE)
    train, val, test = datamodule.train_set.samples, datamodule.val_set.samples, datamodule.test_set.samples
    assert [len(train), len(val), len(test)] == [3 * TRAIN_PER_CLASS - VAL, VAL, 3 * TEST_PER_CLASS]
    train_files = {str(path) for path in (tree / "train").rglob("*.*")}
    assert {path for path, _ in train} | {path for path, _ in val} == train_files
    assert not {path for path, _ in train} & {path for path, _ in val}
    assert {path for path, _ in test} == {str(path) for path in (tree / "val").rglob("*.*")}
    for path, label in train + val + test:
        assert label == CLASSES.index(Path(path).parent.name)


def test_images_keep_their_folders_labels_through_the_loaders(tree: Path) -> None:
    datamodule = _make(tree, normalize="none")
    for loader in (datamodule.val_dataloader(), datamodule.test_dataloader()):
        images, labels = _all(loader)
        assert images.shape[1:] == (3, SIZE, SIZE) and labels.dtype == torch.long
        assert _classes_by_brightness(images) == labels.tolist()
    assert sorted(_all(datamodule.test_dataloader())[1].tolist()) == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("augment", PRESETS)
def test_every_preset_makes_training_batches_of_image_size(tree: Path, augment: str) -> None:
    datamodule = _make(tree, augment=augment)
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (4, 3, SIZE, SIZE) and images.dtype == torch.float32
    assert labels.shape == (4,) and labels.dtype == torch.long


def test_size_keeping_presets_work_on_the_centre_view(tree: Path) -> None:
    datamodule = _make(tree, augment="none")
    path, _ = datamodule.train_set.samples[0]
    torch.testing.assert_close(datamodule.train_set[0][0], datamodule.val_set.transform(pil_loader(path)))


def test_ten_crop_gives_ten_views_per_evaluation_image_with_the_centre_fifth(tree: Path) -> None:
    centre = _make(tree)
    ten = _make(tree, eval_crop="ten_crop")
    ten_images, ten_labels = next(iter(ten.test_dataloader()))
    centre_images, centre_labels = next(iter(centre.test_dataloader()))
    assert ten_images.shape == (4, 10, 3, SIZE, SIZE)
    assert torch.equal(ten_labels, centre_labels)
    torch.testing.assert_close(ten_images[:, 4], centre_images)
    assert next(iter(ten.val_dataloader()))[0].shape == (3, 10, 3, SIZE, SIZE)
    assert next(iter(ten.train_dataloader()))[0].shape == (4, 3, SIZE, SIZE)


def test_a_fixed_split_seed_repeats_the_split(tree: Path) -> None:
    torch.manual_seed(1)
    first = _make(tree)
    torch.manual_seed(2)
    again = _make(tree)
    other = _make(tree, split_seed=1)
    assert first.val_set.samples == again.val_set.samples and first.train_set.samples == again.train_set.samples
    assert first.val_set.samples != other.val_set.samples


def test_one_channel_turns_every_image_grey(tree: Path) -> None:
    datamodule = _make(tree, in_channels=1, normalize="none")
    assert datamodule.input_shape == (1, SIZE, SIZE)
    images, labels = _all(datamodule.test_dataloader())
    assert images.shape == (6, 1, SIZE, SIZE)
    assert _classes_by_brightness(images) == labels.tolist()
    assert next(iter(datamodule.train_dataloader()))[0].shape == (4, 1, SIZE, SIZE)
    paths = [path for path, _ in datamodule.test_set.samples]
    torch.testing.assert_close(images, torch.from_numpy(_centre_views(paths, grey=True)).float())


@pytest.mark.parametrize("in_channels", [3, 1])
def test_published_normalisation_is_imagenets(tree: Path, in_channels: int) -> None:
    raw = _make(tree, in_channels=in_channels, normalize="none").test_set[0][0]
    normalised = _make(tree, in_channels=in_channels).test_set[0][0]
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if in_channels == 3 else (IMAGENET_GREY_MEAN, IMAGENET_GREY_STD)
    expected = (raw - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
    torch.testing.assert_close(normalised, expected)
    assert raw.min() >= 0 and raw.max() <= 1


def test_computed_statistics_match_numpy_and_are_cached_beside_the_data(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _make(tree, normalize="computed")
    views = _centre_views([path for path, _ in first.train_set.samples])
    torch.testing.assert_close(first.normalizer.mean.flatten().double(), torch.from_numpy(views.mean(axis=(0, 2, 3))))
    torch.testing.assert_close(first.normalizer.std.flatten().double(), torch.from_numpy(views.std(axis=(0, 2, 3))))
    assert len(list((tree / CACHE_DIR).glob("*.pt"))) == 1

    def fail(batches: object) -> None:
        raise AssertionError("statistics computed again")

    monkeypatch.setattr("data.imagefolder.compute_statistics", fail)
    second = _make(tree, normalize="computed")
    assert torch.equal(second.normalizer.mean, first.normalizer.mean)
    assert torch.equal(second.normalizer.std, first.normalizer.std)
    with pytest.raises(AssertionError, match="statistics computed again"):
        _make(tree, normalize="computed", split_seed=1)  # another training split: not the cached statistics


def test_mean_image_subtracts_the_training_splits_mean_image(tree: Path) -> None:
    datamodule = _make(tree, normalize="mean_image")
    views = _centre_views([path for path, _ in datamodule.train_set.samples])
    assert datamodule.normalizer.mean.shape == (3, SIZE, SIZE)
    torch.testing.assert_close(datamodule.normalizer.mean.double(), torch.from_numpy(views.mean(axis=0)))
    raw = _make(tree, normalize="none").test_set[0][0]
    torch.testing.assert_close(datamodule.test_set[0][0], raw - datamodule.normalizer.mean)


def _no_root(root: Path) -> Path:
    return root / "nowhere"


def _no_train(root: Path) -> Path:
    root.mkdir()
    return root


def _no_val(root: Path) -> Path:
    shutil.rmtree(write_tree(root) / "val")
    return root


def _no_class_folders(root: Path) -> Path:
    (root / "train").mkdir(parents=True)
    _write_image(root / "train" / "loose.png", "RGB", (8, 8), 0, np.random.default_rng(0))
    return root


def _empty_class(root: Path) -> Path:
    write_tree(root)
    (root / "train" / "yak").mkdir()
    (root / "train" / "yak" / "notes.txt").write_text("no images here")
    return root


@pytest.mark.parametrize(
    ("make_layout", "message"),
    [
        (_no_root, "image folder {root}/nowhere not found: expected <data_dir>/train/<class>/<image>"),
        (_no_train, "{root}/train not found: expected <data_dir>/train/<class>/<image>"),
        (_no_val, "{root}/val not found: expected <data_dir>/train/<class>/<image>"),
        (_no_class_folders, "no class folders in {root}/train: expected <data_dir>/train/<class>/<image>"),
        (_empty_class, "{root}/train: Found no valid file for the classes yak"),
    ],
)
def test_a_wrong_layout_says_which_directory_and_what_layout(
    tmp_path: Path, make_layout: callable, message: str
) -> None:
    root = make_layout(tmp_path / "images")
    num_classes = 4 if make_layout is _empty_class else 3
    with pytest.raises(FileNotFoundError) as info:
        _make(root, num_classes=num_classes)
    assert "\n" not in str(info.value)
    assert message.format(root=tmp_path / "images") in str(info.value)


def test_val_folders_must_name_the_train_classes(tree: Path) -> None:
    (tree / "val" / "moose").rename(tree / "val" / "mouse")
    expected = f"{tree}/val must hold the class folders of {tree}/train; missing from val/: moose; not in train/: mouse"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        _make(tree)


def test_num_classes_must_match_the_folders(tree: Path) -> None:
    expected = (
        f"num_classes=1000 was given, but ImageFolderDataModule has 3 classes (the folders of {tree}/train); "
        "set data.num_classes=3"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        _make(tree, num_classes=1000)


def test_val_size_must_leave_training_images(tree: Path) -> None:
    with pytest.raises(
        ValueError, match=f"^val_size=12 leaves no training images: {re.escape(str(tree))}/train has 12$"
    ):
        _make(tree, val_size=12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 0}, "image_size must be a positive integer, got 0"),
        ({"in_channels": 2}, r"in_channels must be 1 \(grey\) or 3 \(RGB\), got 2"),
        ({"val_size": 0}, "val_size must be a positive integer, got 0"),
        ({"split_seed": 0.5}, "split_seed must be an integer, got 0.5"),
        ({"augment": "autoaugment"}, "augment must be one of none, cifar, mnist, alexnet, vgg, inception, got"),
        ({"eval_crop": "five_crop"}, "eval_crop must be one of center, ten_crop, got 'five_crop'"),
        ({"normalize": "zca"}, "normalize must be one of published, computed, mean_image, none, got 'zca'"),
        ({"bad_images": "ignore"}, "bad_images must be one of fail, skip, got 'ignore'"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _make(tmp_path, setup=False, **kwargs)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_unreadable_images_fail_naming_the_file(bad_tree: tuple[Path, list[Path]], num_workers: int) -> None:
    root, (truncated, garbage) = bad_tree
    datamodule = _make(root, num_workers=num_workers)
    with pytest.raises(UnreadableImageError) as info:
        list(datamodule.test_dataloader())
    message = str(info.value)  # one line, also when raised in a DataLoader worker
    assert message.startswith(f"cannot read image {truncated}: OSError: ") and "\n" not in message
    assert "truncated" in message.lower()
    with pytest.raises(UnreadableImageError, match=f"^cannot read image {re.escape(str(garbage))}: not an image"):
        datamodule.test_set[[path for path, _ in datamodule.test_set.samples].index(str(garbage))]


def test_an_unreadable_training_image_stops_the_statistics_in_setup(bad_tree: tuple[Path, list[Path]]) -> None:
    root, (truncated, _) = bad_tree
    moved = root / "train" / "ant" / truncated.name
    truncated.rename(moved)
    assert str(moved) in {path for path, _ in _make(root, val_size=1, normalize="none").train_set.samples}
    with pytest.raises(ValueError, match=f"^cannot read image {re.escape(str(moved))}: OSError: .*(?i:truncated)"):
        _make(root, val_size=1, normalize="computed")


def test_skipped_images_leave_the_batches_with_their_labels(bad_tree: tuple[Path, list[Path]]) -> None:
    root, bad = bad_tree
    datamodule = _make(root, bad_images="skip", normalize="none")
    with pytest.warns(UserWarning) as record:
        images, labels = _all(datamodule.test_dataloader())
    warned = sorted(str(warning.message) for warning in record if "unreadable" in str(warning.message))
    assert len(warned) == 2
    assert warned[0].startswith(f"skipping unreadable image {bad[0]}: OSError: ") and "truncated" in warned[0].lower()
    assert warned[1] == f"skipping unreadable image {bad[1]}: not an image format PIL recognises (or a damaged header)"
    good = [label for path, label in datamodule.test_set.samples if Path(path) not in bad]
    assert len(datamodule.test_set) == 8 and len(labels) == 6
    assert labels.tolist() == good
    assert _classes_by_brightness(images) == good


def test_a_batch_of_only_skipped_images_is_an_error() -> None:
    with pytest.raises(UnreadableImageError, match="all 2 images of a batch were unreadable"):
        drop_skipped([None, None])
    images, labels = drop_skipped([None, (torch.zeros(3, 2, 2), 1)])
    assert images.shape == (1, 3, 2, 2) and labels.tolist() == [1]


def test_a_16_bit_copy_of_an_image_is_read_as_the_8_bit_one(tmp_path: Path) -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (20, 24), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "grey8.png")
    Image.frombytes("I;16", (24, 20), (pixels.astype("<u2") * 257).tobytes()).save(tmp_path / "grey16.png")
    files = ImageFiles([(str(tmp_path / "grey8.png"), 0), (str(tmp_path / "grey16.png"), 0)], v2.PILToTensor())
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    assert torch.equal(files[1][0], files[0][0])


def test_a_decompression_bomb_in_the_training_folder_is_named_with_its_size(tree: Path) -> None:
    bomb = write_decompression_bomb(tree / "train" / "ant" / "ant_bomb.png")
    with pytest.raises(UnreadableImageError) as info:
        _make(tree, val_size=1, normalize="computed")  # the statistics read every training image
    assert str(info.value) == (
        f"cannot read image {bomb}: DecompressionBombError: Image size (900000000 pixels) exceeds limit of "
        f"{2 * Image.MAX_IMAGE_PIXELS} pixels, could be decompression bomb DOS attack."
    )


def test_truncated_images_are_never_patched_up(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ValueError, match="LOAD_TRUNCATED_IMAGES is switched on"):
        _make(tree)


def test_config_names_the_module_and_its_arguments(tree: Path) -> None:
    cfg = yaml.safe_load(CONFIG.read_text())
    assert cfg.pop("_target_") == "data.ImageFolderDataModule"
    assert set(cfg) == set(accepted_arguments(ImageFolderDataModule)[0]) - {"self"}
    defaults = {  # the arguments passed on with **kwargs take their defaults from the base classes
        name: parameter.default
        for cls in reversed(ImageFolderDataModule.__mro__)
        if "__init__" in vars(cls)
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
    }
    assert all(cfg[name] == defaults[name] for name in cfg)
    datamodule = ImageFolderDataModule(**{**cfg, "data_dir": str(tree), "num_classes": 3, "val_size": VAL})
    assert datamodule.input_shape == (3, 224, 224)
    assert os.path.normpath(cfg["data_dir"]) == os.path.join("datasets", "imagenet")


def test_trains_through_the_train_entry_point(train_config, tree: Path) -> None:
    """Runs once ``data/__init__.py`` exports ``ImageFolderDataModule`` (the config's ``_target_``)."""
    from training.tasks import train

    cfg = train_config(
        "data=imagefolder", f"data.data_dir={tree}", "model=resnet20", "data.image_size=32", "data.num_classes=3",
        "data.val_size=3", "data.num_workers=0", "data.augment=cifar", "debug=fdr",
    )  # fmt: skip
    assert 0.0 <= train(cfg)["test/acc"] <= 1.0


def test_the_train_script_stops_at_an_unreadable_image_in_one_line(bad_tree: tuple[Path, list[Path]], tmp_path) -> None:
    from conftest import run_script

    root, bad_files = bad_tree
    args = [
        "data=imagefolder", f"data.data_dir={root}", "data.num_classes=3", f"data.val_size={VAL}", "data.num_workers=0",
        f"data.image_size={SIZE}", "data.batch_size=4", "model=resnet20", "trainer.max_epochs=1", "trainer=cpu",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    result = run_script("train.py", *args, cwd=tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot read image ") and any(str(path) in last for path in bad_files)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()  # what training wrote is kept
