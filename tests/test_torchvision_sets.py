"""The torchvision sets, read from tiny files written here in the real on-disk formats (no download).

torchvision checks only that MNIST's uncompressed idx files exist, but verifies the md5 sum of every
CIFAR pickle on load, so the CIFAR tests replace ``torchvision.datasets.cifar.check_integrity`` by a
plain existence check (in the tests only) to read the fake pickles through the same code path.
"""

from __future__ import annotations

import os
import pickle
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
import yaml

from conftest import model_inputs
from data.torchvision_sets import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    TorchvisionDataModule,
)
from training.config import accepted_arguments

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "data"
N_TRAIN, N_TEST, VAL = 20, 10, 4


def _pixels(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    n, rows, cols = images.shape
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 2051, n, rows, cols) + images.tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, n) + labels.tobytes())


def write_mnist_like(root: Path, folder: str) -> dict[str, np.ndarray]:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    files = {
        "train_x": _pixels(N_TRAIN, (28, 28), 1),
        "train_y": (np.arange(N_TRAIN) % 10).astype(np.uint8),
        "test_x": _pixels(N_TEST, (28, 28), 2),
        "test_y": (np.arange(N_TEST)[::-1] % 10).astype(np.uint8),
    }
    _write_idx(raw, "train", files["train_x"], files["train_y"])
    _write_idx(raw, "t10k", files["test_x"], files["test_y"])
    return files


def _pickle(path: Path, content: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(content, f)


def write_cifar(root: Path, module: type[TorchvisionDataModule]) -> dict[str, np.ndarray]:
    classes = len(module.class_names_of_set)
    files = {
        "train_x": _pixels(N_TRAIN, (3, 32, 32), 3),
        "train_y": np.arange(N_TRAIN) % classes,
        "test_x": _pixels(N_TEST, (3, 32, 32), 4),
        "test_y": np.arange(N_TEST)[::-1] % classes,
    }
    flat_x = {split: files[f"{split}_x"].reshape(-1, 3 * 32 * 32) for split in ("train", "test")}
    if module is CIFAR10DataModule:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for batch in range(5):  # 4 images in each of data_batch_1 ... data_batch_5
            part = slice(4 * batch, 4 * batch + 4)
            content = {"data": flat_x["train"][part], "labels": files["train_y"][part].tolist()}
            _pickle(folder / f"data_batch_{batch + 1}", content)
        _pickle(folder / "test_batch", {"data": flat_x["test"], "labels": files["test_y"].tolist()})
        _pickle(folder / "batches.meta", {"label_names": list(module.class_names_of_set)})
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for split in ("train", "test"):
            _pickle(folder / split, {"data": flat_x[split], "fine_labels": files[f"{split}_y"].tolist()})
        _pickle(folder / "meta", {"fine_label_names": list(module.class_names_of_set)})
    return files


SETS = {
    MNISTDataModule: lambda root: write_mnist_like(root, "MNIST"),
    FashionMNISTDataModule: lambda root: write_mnist_like(root, "FashionMNIST"),
    CIFAR10DataModule: lambda root: write_cifar(root, CIFAR10DataModule),
    CIFAR100DataModule: lambda root: write_cifar(root, CIFAR100DataModule),
}


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("datasets")
    return root, {module: write(root) for module, write in SETS.items()}


@pytest.fixture(autouse=True)
def skip_cifar_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake CIFAR pickles cannot match the real files' md5 sums: check only that they exist."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def _make(module: type[TorchvisionDataModule], root: Path, **kwargs) -> TorchvisionDataModule:
    kwargs = {"num_classes": len(module.class_names_of_set), "batch_size": 8, **kwargs}
    datamodule = module(data_dir=str(root), val_size=VAL, **kwargs)
    datamodule.setup()
    return datamodule


@pytest.mark.parametrize("module", list(SETS))
def test_reads_the_files_with_their_shapes_labels_and_splits(module: type, fake_root: tuple) -> None:
    root, files = fake_root
    raw = files[module]
    datamodule = _make(module, root)
    channels, size = module.native_channels, module.native_size
    assert datamodule.input_shape == (channels, size, size)
    assert datamodule.num_classes == len(module.class_names_of_set)
    assert [len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)] == [
        N_TRAIN - VAL,
        VAL,
        N_TEST,
    ]
    assert datamodule.train_set.images.dtype == torch.uint8
    assert datamodule.train_set.images.shape == (N_TRAIN - VAL, channels, size, size)
    train_and_val = torch.cat([datamodule.train_set.labels, datamodule.val_set.labels])
    assert sorted(train_and_val.tolist()) == sorted(raw["train_y"].tolist())
    assert datamodule.test_set.labels.tolist() == raw["test_y"].tolist()
    images, labels = model_inputs(datamodule, "train")
    assert images.shape == (N_TRAIN - VAL, channels, size, size) and images.dtype == torch.float32
    assert labels.dtype == torch.long


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("module", list(SETS))
def test_images_are_scaled_and_normalised_with_the_published_constants(
    module: type, fast_path: bool, fake_root: tuple
) -> None:
    root, files = fake_root
    datamodule = _make(module, root, fast_path=fast_path)
    raw = torch.as_tensor(files[module]["test_x"][3], dtype=torch.float32)
    raw = raw.unsqueeze(0) if raw.ndim == 2 else raw
    mean, std = (torch.tensor(values).view(-1, 1, 1) for values in module.published_stats)
    torch.testing.assert_close(model_inputs(datamodule, "test")[0][3], (raw / 255 - mean) / std)


def test_computed_statistics_are_cached_beside_the_data(fake_root: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fake_root[0]
    first = _make(CIFAR10DataModule, root, normalize="computed", split_seed=7)
    train_images = first.train_set.images.float() / 255
    images, _ = model_inputs(first, "val")
    mean, std = train_images.mean(dim=(0, 2, 3)), train_images.std(dim=(0, 2, 3), unbiased=False)
    raw_val = first.val_set.images.float() / 255
    torch.testing.assert_close(images, (raw_val - mean.view(-1, 1, 1)) / std.view(-1, 1, 1))
    cached = list((root / ".classicnets-stats").glob("CIFAR10-*.pt"))
    assert len(cached) == 1

    def recompute(batches):
        raise AssertionError("the cached statistics should have been read")

    monkeypatch.setattr("data.in_memory.compute_statistics", recompute)
    again = _make(CIFAR10DataModule, root, normalize="computed", split_seed=7)
    torch.testing.assert_close(model_inputs(again, "val")[0], images)
    with pytest.raises(AssertionError, match="cached statistics"):  # another split is another cache entry
        _make(CIFAR10DataModule, root, normalize="computed", split_seed=8)


def test_mean_image_subtraction(fake_root: tuple) -> None:
    datamodule = _make(CIFAR10DataModule, fake_root[0], normalize="mean_image", augment="none", split_seed=5)
    images, _ = model_inputs(datamodule, "train")
    assert images.mean(dim=0).abs().max() < 1e-5  # each pixel of the training split averages to zero
    assert images.abs().max() <= 1


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_sizing_preset_needs_the_per_image_path(fast_path: bool, fake_root: tuple) -> None:
    if fast_path:
        with pytest.raises(ValueError, match="augmentation 'alexnet' has no whole-batch version"):
            _make(CIFAR10DataModule, fake_root[0], augment="alexnet", fast_path=True)
        return
    datamodule = _make(
        CIFAR10DataModule, fake_root[0], augment="alexnet", fast_path=False, image_size=48, num_workers=0
    )
    assert model_inputs(datamodule, "train")[0].shape == (N_TRAIN - VAL, 3, 48, 48)
    assert model_inputs(datamodule, "test")[0].shape == (N_TEST, 3, 48, 48)


def test_cifar100_uses_the_fine_labels_and_100_classes(fake_root: tuple) -> None:
    datamodule = _make(CIFAR100DataModule, fake_root[0])
    assert datamodule.class_names[:3] == ["apple", "aquarium_fish", "baby"] and datamodule.num_classes == 100
    assert datamodule.test_set.labels.max() == N_TEST - 1


def test_class_names(fake_root: tuple) -> None:
    assert _make(MNISTDataModule, fake_root[0]).class_names == [str(d) for d in range(10)]
    assert _make(FashionMNISTDataModule, fake_root[0]).class_names[-1] == "Ankle boot"
    assert _make(CIFAR10DataModule, fake_root[0]).class_names[0] == "airplane"


def test_split_is_fixed_by_split_seed_not_the_torch_seed(fake_root: tuple) -> None:
    torch.manual_seed(1)
    first = _make(MNISTDataModule, fake_root[0])
    torch.manual_seed(2)
    again = _make(MNISTDataModule, fake_root[0])
    other = _make(MNISTDataModule, fake_root[0], split_seed=1)
    assert torch.equal(first.val_set.images, again.val_set.images)
    assert not torch.equal(first.val_set.images, other.val_set.images)


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("module", [MNISTDataModule, CIFAR10DataModule])
def test_resize(module: type, fast_path: bool, fake_root: tuple) -> None:
    datamodule = _make(module, fake_root[0], image_size=40, fast_path=fast_path, num_workers=0)
    assert datamodule.input_shape == (module.native_channels, 40, 40)
    assert model_inputs(datamodule, "test")[0].shape[1:] == (module.native_channels, 40, 40)
    assert model_inputs(datamodule, "train")[0].shape[1:] == (module.native_channels, 40, 40)


@pytest.mark.parametrize("module", [MNISTDataModule, FashionMNISTDataModule])
def test_three_channels_repeat_the_grey_image(module: type, fake_root: tuple) -> None:
    datamodule = _make(module, fake_root[0], in_channels=3)
    grey = _make(module, fake_root[0])
    image = model_inputs(datamodule, "test")[0][0]
    assert datamodule.input_shape == (3, 28, 28) and image.shape == (3, 28, 28)
    assert torch.equal(image[0], image[2]) and torch.equal(image[1], model_inputs(grey, "test")[0][0][0])


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize(("module", "preset"), [(MNISTDataModule, "mnist"), (CIFAR10DataModule, "cifar")])
def test_augmentation_changes_training_images_only(
    module: type, preset: str, fast_path: bool, fake_root: tuple
) -> None:
    torch.manual_seed(0)
    plain = _make(module, fake_root[0], augment="none", fast_path=fast_path, num_workers=0, batch_size=N_TRAIN)
    augmented = _make(module, fake_root[0], augment=preset, fast_path=fast_path, num_workers=0, batch_size=N_TRAIN)
    plain_train = model_inputs(plain, "train")[0]
    draws = [model_inputs(augmented, "train")[0] for _ in range(3)]  # batch_size=N_TRAIN: one shuffled batch
    assert all(d.shape == plain_train.shape for d in draws)
    sums = [d.sum(dim=(1, 2, 3)).sort().values for d in draws]
    assert not torch.allclose(sums[0], sums[1]) and not torch.allclose(
        sums[0], plain_train.sum(dim=(1, 2, 3)).sort().values
    )
    for split in ("val", "test"):
        assert torch.equal(model_inputs(augmented, split)[0], model_inputs(plain, split)[0])


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (MNISTDataModule, "MNIST/raw/train-images-idx3-ubyte"),
        (FashionMNISTDataModule, "FashionMNIST/raw/t10k-labels-idx1-ubyte"),
        (CIFAR10DataModule, "cifar-10-batches-py/data_batch_1"),
        (CIFAR100DataModule, "cifar-100-python/meta"),
    ],
)
def test_missing_files_name_the_directory_and_the_fix(module: type, expected: str, tmp_path: Path) -> None:
    datamodule = module(data_dir=str(tmp_path / "empty"), num_classes=len(module.class_names_of_set))
    with pytest.raises(FileNotFoundError) as info:
        datamodule.setup()
    message = str(info.value)
    assert "\n" not in message
    assert os.path.join(str(tmp_path / "empty"), expected) in message
    assert "pass data.download=true on a machine with internet, or data.data_dir=<dir holding them>" in message


@pytest.mark.parametrize("module", list(SETS))
def test_a_download_without_a_network_is_one_line_naming_the_files_to_put_there(
    module: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    datamodule = module(data_dir=str(tmp_path), download=True, num_classes=len(module.class_names_of_set))
    with pytest.raises(FileNotFoundError) as info:
        datamodule.setup()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"could not download {module.dataset_class.__name__} into {str(tmp_path)!r} (")
    assert module.expected_files(str(tmp_path))[0] in message
    assert message.endswith("and leave out data.download, or give data.data_dir=<dir holding them>")


def test_cifar_md5_is_checked_without_the_test_patch(fake_root: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real check_integrity: the fake pickles fail torchvision's md5 check
    with pytest.raises(FileNotFoundError, match="not found \\(or corrupted\\)"):
        _make(CIFAR10DataModule, fake_root[0])


@pytest.mark.parametrize(
    ("module", "kwargs", "message"),
    [
        (MNISTDataModule, {"num_classes": 5}, "num_classes=5 was given, but MNISTDataModule has 10 classes"),
        (CIFAR100DataModule, {"num_classes": 10}, "num_classes=10 was given, but CIFAR100DataModule has 100"),
        (MNISTDataModule, {"in_channels": 2}, "in_channels must be 1 or 3 for MNISTDataModule"),
        (CIFAR10DataModule, {"in_channels": 1}, "in_channels must be 3 for CIFAR10DataModule"),
        (CIFAR10DataModule, {"augment": "autoaugment"}, "unknown augment 'autoaugment'; accepted: none, cifar"),
        (CIFAR10DataModule, {"image_size": 0}, "image_size must be a positive integer"),
        (CIFAR10DataModule, {"val_size": 0}, "val_size must be a positive integer"),
    ],
)
def test_bad_settings_are_refused(module: type, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        module(**kwargs)


def test_val_size_must_leave_training_images(fake_root: tuple) -> None:
    with pytest.raises(
        ValueError,
        match="val_size=20 leaves no training images: the training split has 20; set "
        r"data.val_size to fewer, e.g. data.val_size=2 \(a tenth\)",
    ):
        CIFAR10DataModule(data_dir=str(fake_root[0]), val_size=N_TRAIN).setup()


@pytest.mark.parametrize(
    ("config", "module"),
    [
        ("mnist", MNISTDataModule),
        ("fashion_mnist", FashionMNISTDataModule),
        ("cifar10", CIFAR10DataModule),
        ("cifar100", CIFAR100DataModule),
    ],
)
def test_configs_name_the_module_and_its_arguments(config: str, module: type) -> None:
    cfg = yaml.safe_load((CONFIGS / f"{config}.yaml").read_text())
    assert cfg.pop("_target_") == f"data.{module.__name__}"
    assert cfg["download"] is False and cfg["data_dir"] == "datasets"
    assert set(cfg) <= set(accepted_arguments(module)[0])
    datamodule = module(**cfg)
    assert datamodule.input_shape == (module.native_channels, module.native_size, module.native_size)


@pytest.mark.parametrize(
    ("model", "data", "extra"),
    [
        ("resnet20", "cifar10", []),
        ("lenet5", "mnist", []),
        ("lenet5", "mnist", ["data.image_size=32"]),
        ("resnet20", "cifar100", []),
    ],
)
def test_models_train_from_the_files_through_the_train_entry_point(
    train_config, fake_root: tuple, model: str, data: str, extra: list[str]
) -> None:
    from training.tasks import train

    root, _ = fake_root
    cfg = train_config(
        f"model={model}", f"data={data}", f"data.data_dir={root}", f"data.val_size={VAL}", "data.batch_size=4",
        "debug=fdr", *extra,
    )  # fmt: skip
    summary = train(cfg)
    assert 0.0 <= summary["test/acc"] <= 1.0


def test_lenet5_on_mnist_centres_the_digits_in_its_32x32_field_as_the_paper_did(
    train_config, fake_root: tuple, tmp_path: Path
) -> None:
    from PIL import Image

    from training.inference import load_model
    from training.tasks import train

    root, files = fake_root
    cfg = train_config(
        "model=lenet5", "data=mnist", f"data.data_dir={root}", f"data.val_size={VAL}", "data.batch_size=4",
        "trainer.max_epochs=1", "test=false",
    )  # fmt: skip
    summary = train(cfg)
    assert cfg.data.pad == 2  # recorded: the run's config.yaml and its checkpoints pad as well
    assert "pad: 2" in (Path(summary["output_dir"]) / "config.yaml").read_text()
    padded = _make(MNISTDataModule, root, pad=2)
    plain = _make(MNISTDataModule, root)
    images, _ = model_inputs(padded, "test")
    assert images.shape[1:] == (1, 32, 32)
    background = (0 - 0.1307) / 0.3081  # a zero pixel, normalised with MNIST's published statistics
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert torch.allclose(images[:, :, border], torch.tensor(background))
    torch.testing.assert_close(images[:, :, 2:30, 2:30], model_inputs(plain, "test")[0])
    # predict.py's preprocessing of a 28x28 image is the evaluation's: centred, not resized
    model = load_model(summary["last_checkpoint"])
    Image.fromarray(files[MNISTDataModule]["test_x"][0]).save(tmp_path / "digit.png")
    torch.testing.assert_close(model.transform(Image.open(tmp_path / "digit.png")), images[0])


def test_missing_files_stop_the_run_before_training_with_one_line(train_config, tmp_path: Path) -> None:
    from training.config import UserError
    from training.tasks import build

    with pytest.raises(UserError, match=r"^data: MNIST not found \(or corrupted\) in .*pass data.download=true"):
        build(train_config("data=mnist", f"data.data_dir={tmp_path}", "data.image_size=32"))


@pytest.mark.parametrize(("order", "input_size", "shape"), [("rows", 28, (28, 28)), ("pixels", 1, (784, 1))])
def test_sequential_mnist_reads_the_images_as_sequences(
    fake_root: tuple, order: str, input_size: int, shape: tuple[int, int]
) -> None:
    from data import SequentialMNISTDataModule

    root, files = fake_root
    datamodule = SequentialMNISTDataModule(order=order, input_size=input_size, data_dir=str(root), val_size=VAL)
    datamodule.setup()
    sequences, labels = model_inputs(datamodule, "test")
    sequence, label = sequences[0], labels[0]
    assert sequence.shape == shape and datamodule.input_shape == shape
    expected = (torch.tensor(files[MNISTDataModule]["test_x"][0], dtype=torch.float32) / 255 - 0.1307) / 0.3081
    assert torch.allclose(sequence.reshape(28, 28), expected, atol=1e-5)
    assert label == int(files[MNISTDataModule]["test_y"][0])
    with pytest.raises(ValueError, match=r"input_size=28 does not fit order=pixels.*set data.input_size=1"):
        SequentialMNISTDataModule(order="pixels", input_size=28, data_dir=str(root))
    with pytest.raises(ValueError, match="in_channels must be 1 and pad 0, got 1 and 2"):
        SequentialMNISTDataModule(data_dir=str(root), pad=2)


def test_lstm_on_sequential_mnist_trains_through_the_train_entry_point(train_config, fake_root: tuple) -> None:
    from training.tasks import train

    root, _ = fake_root
    cfg = train_config("experiment=lstm_seq_mnist", f"data.data_dir={root}", f"data.val_size={VAL}", "debug=fdr")
    assert 0.0 <= train(cfg)["test/acc"] <= 1.0
