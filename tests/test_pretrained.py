"""Pretrained weights: every kind of file ``create_model(pretrained=...)`` reads (and ``read_net_weights``, our
training checkpoints), torchvision's weights for every shared architecture (files, and the weights API without the
network), and bad input refused in one line."""

from __future__ import annotations

import urllib.error
from collections.abc import Callable
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torchvision
from torchvision.models._api import WeightsEnum

from models import TORCHVISION_NAMES, ClassCountMismatch, create_model, load_pretrained
from training.checkpoint_io import read_net_weights
from training.config import UserError
from training.tasks import build

# VGG's fully-connected layers make each file half a gigabyte to write and read; Inception-v3 takes seconds to build
SLOW = {name for name in TORCHVISION_NAMES if name.startswith("vgg") and name != "vgg11_bn"} | {"inception_v3"}


def torchvision_model(name: str, **kwargs: object) -> torch.nn.Module:
    """torchvision's network that ours called ``name`` copies, randomly initialised, in eval mode."""
    torch.manual_seed(0)
    kwargs = {"init_weights": True, **kwargs} if name in ("googlenet_tv", "inception_v3") else kwargs
    return torchvision.models.get_model(TORCHVISION_NAMES[name], weights=None, **kwargs).eval()


def save(state_dict: dict[str, torch.Tensor], path: Path, form: str) -> Path:
    if form == "safetensors":
        safetensors.torch.save_file({key: value.contiguous() for key, value in state_dict.items()}, path)
    else:
        torch.save(state_dict, path)
    return path


def training_checkpoint(net: torch.nn.Module, path: Path, name: str) -> Path:
    """A file laid out as scripts/train.py's checkpoints: the LightningModule's ``net.`` weights, the run config."""
    state_dict = {f"net.{key}": value for key, value in net.state_dict().items()}
    run_config = {"model": {"name": name}, "data": {"num_classes": 10}}
    torch.save({"epoch": 3, "state_dict": state_dict, "hyper_parameters": {"run_config": run_config}}, path)
    return path


def assert_same_weights(loaded: torch.nn.Module, source: torch.nn.Module) -> None:
    expected = source.state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(value, expected[key]) for key, value in loaded.state_dict().items())


@pytest.mark.parametrize(
    ("name", "form"),
    [
        pytest.param(name, form, marks=[pytest.mark.slow] if name in SLOW else [])
        for name, form in zip(TORCHVISION_NAMES, ["torch.save", "safetensors"] * len(TORCHVISION_NAMES), strict=False)
    ],
)
def test_a_torchvision_file_gives_torchvision_outputs(name: str, form: str, tmp_path: Path) -> None:
    theirs = torchvision_model(name, num_classes=10)
    path = save(theirs.state_dict(), tmp_path / "weights.bin", form)  # the content, not the suffix, says what it is
    ours = create_model(name, num_classes=10, pretrained=path).eval()
    size = max(64, ours.min_input_size)  # inception_v3 takes 75 and up
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["training checkpoint", "torch.save", "safetensors", "LightningModule state dict"])
def test_our_weights_load_from_every_kind_of_file(kind: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_model("lenet5", norm="batch")
    source.features.bn1.running_mean.add_(1.0)  # buffers travel too
    path = tmp_path / "weights.pt"
    if kind == "training checkpoint":
        training_checkpoint(source, path, "lenet5")
    elif kind == "LightningModule state dict":
        torch.save({f"net.{key}": value for key, value in source.state_dict().items()}, path)
    else:
        save(source.state_dict(), path, kind)
    assert_same_weights(create_model("lenet5", norm="batch", pretrained=read_net_weights(path)[0]), source)
    if kind in ("torch.save", "safetensors"):  # a file of the network's own state dict loads as it is
        assert_same_weights(create_model("lenet5", norm="batch", pretrained=path), source)


def test_a_training_checkpoint_names_the_model_it_trained(tmp_path: Path) -> None:
    path = training_checkpoint(create_model("resnet20"), tmp_path / "run.ckpt", "resnet20")
    state_dict, trained_as = read_net_weights(path)
    assert trained_as == "resnet20" and "fc.weight" in state_dict


@pytest.mark.parametrize("hyper_parameters", [["a list"], {"run_config": "text"}, {"run_config": {"model": 3}}])
def test_a_checkpoint_with_odd_hyper_parameters_still_gives_its_weights(tmp_path: Path, hyper_parameters) -> None:
    path = tmp_path / "odd.ckpt"
    source = create_model("lenet5")
    torch.save(
        {"state_dict": {f"net.{k}": v for k, v in source.state_dict().items()}, "hyper_parameters": hyper_parameters},
        path,
    )
    state_dict, trained_as = read_net_weights(path)
    assert trained_as is None and state_dict.keys() == source.state_dict().keys()


def test_the_models_refuse_a_training_checkpoint_naming_its_reader(tmp_path: Path) -> None:
    path = training_checkpoint(create_model("lenet5"), tmp_path / "run.ckpt", "lenet5")
    message = (
        rf"^{path} is a training checkpoint, not a state dict; read the network's weights with "
        r"training\.checkpoint_io\.read_net_weights\(path\), or save them with scripts/export\.py format=state_dict$"
    )
    with pytest.raises(ValueError, match=message):
        create_model("lenet5", pretrained=path)


@pytest.fixture
def torchvision_api(monkeypatch: pytest.MonkeyPatch) -> Callable[[torch.nn.Module], list]:
    """torchvision's weights API without the network: ``serve(model)`` makes ``get_state_dict`` return the model's
    state dict, and returns the list of (weights, keyword arguments) it is asked with."""

    def serve(model: torch.nn.Module) -> list:
        asked = []

        def get_state_dict(weights: WeightsEnum, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
            asked.append((weights, kwargs))
            return model.state_dict()

        monkeypatch.setattr(WeightsEnum, "get_state_dict", get_state_dict)
        return asked

    return serve


@pytest.mark.parametrize("name", ["resnet18", "googlenet_tv", "squeezenet1_1"])
def test_pretrained_torchvision_asks_torchvision_for_its_default_weights(name: str, torchvision_api) -> None:
    theirs = torchvision_model(name)
    asked = torchvision_api(theirs)
    ours = create_model(name, pretrained="torchvision").eval()
    [(weights, kwargs)] = asked
    assert weights is torchvision.models.get_model_weights(TORCHVISION_NAMES[name]).DEFAULT
    assert kwargs["weights_only"] is True and kwargs["check_hash"] is True
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


def test_pretrained_torchvision_offline_says_what_to_do(monkeypatch: pytest.MonkeyPatch, train_config) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    message = (
        r"could not download torchvision's resnet18 weights \(\[Errno -3\] Temporary failure in name resolution\); "
        r"download them on a machine with internet and pass the file: model.pretrained=<path> "
        r"\(the file: https://download.pytorch.org/models/resnet18-\w+.pth\)$"
    )
    with pytest.raises(ValueError, match="^" + message):
        create_model("resnet18", pretrained="torchvision")
    with pytest.raises(UserError, match="^model.pretrained: " + message):
        build(train_config("model=resnet18", "model.pretrained=torchvision", "data=fake", "data.image_size=32"))


def test_another_class_count_loads_everything_else_under_a_new_classifier(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_model("googlenet_tv", num_classes=7)
    model = create_model("googlenet_tv", num_classes=3)
    with pytest.raises(ClassCountMismatch, match="the state dict has a classifier for 7 classes, googlenet_tv here 3"):
        load_pretrained(model, source.state_dict(), "googlenet_tv")
    load_pretrained(model, source.state_dict(), "googlenet_tv", reset_classifier=True)
    per_class = {"classifier", "aux1.classifier", "aux2.classifier"}
    for key, value in model.state_dict().items():
        if key.rpartition(".")[0] in per_class:
            assert value.shape[0] == 3
        else:
            assert torch.equal(value, source.state_dict()[key]), key
    assert [layer.out_features for layer in model.get_classifiers()] == [3, 3, 3]


@pytest.mark.parametrize("name", ["lenet5_paper", "squeezenet1_1"])  # an RBF layer's prototypes, a 1x1 conv
def test_every_kind_of_classifier_is_replaced(name: str) -> None:
    source, model = create_model(name, num_classes=10), create_model(name, num_classes=4)
    load_pretrained(model, source.state_dict(), name, reset_classifier=True)
    assert model.num_classes == 4
    assert_same_weights(model.features, source.features)
    assert model(torch.randn(2, *model.native_input_size)).shape == (2, 4)


def bad_source(case: str, tmp_path: Path) -> tuple[object, str]:
    """Weights that must not load into lenet5, and the start of the message that says why."""
    path = tmp_path / "weights.pt"
    if case == "another architecture":
        torch.save(create_model("resnet20").state_dict(), path)
        return path, rf"{path} does not fit lenet5 \(LeNet5\); nothing was loaded. missing \(10\): features.c1.weight"
    if case == "a checkpoint of another model":
        training_checkpoint(create_model("resnet20"), path, "resnet20")
        return path, rf"{path} \(a checkpoint of resnet20\) does not fit lenet5 \(LeNet5\); nothing was loaded. missing"
    if case == "other shapes":
        torch.save(create_model("lenet5", in_channels=3).state_dict(), path)
        return path, rf"{path} does not fit .* mismatch \(1\): features.c1.weight \(6, 3, 5, 5\) vs \(6, 1, 5, 5\)$"
    if case == "truncated":
        torch.save(create_model("lenet5").state_dict(), path)
        path.write_bytes(path.read_bytes()[:5000])
        return path, rf"{path} is truncated or damaged \(.*\); save or copy it again$"
    if case == "not a checkpoint":
        path.write_text("model: lenet5\n")
        return path, rf"{path} is not a readable PyTorch checkpoint or weights file: neither a torch.save file nor"
    if case == "not a state dict":
        torch.save({"epoch": 3, "optimizer": [0.1]}, path)
        return path, rf"{path} is not a checkpoint or weights file: it holds a dict of other things, not a state dict"
    if case == "missing":
        return tmp_path / "nowhere.pt", r"weights file not found: .*nowhere.pt$"
    if case == "another class count":
        torch.save(create_model("lenet5", num_classes=7).state_dict(), path)
        return path, rf"{path} has a classifier for 7 classes, lenet5 here 10; nothing was loaded"
    assert case == "torchvision lacks it"
    return "torchvision", r"torchvision has no weights for lenet5; pretrained='torchvision' takes alexnet_tv, googlenet"


BAD_CASES = [
    "another architecture", "a checkpoint of another model", "other shapes", "truncated", "not a checkpoint",
    "not a state dict", "missing", "another class count", "torchvision lacks it",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_weights_are_refused_in_one_line_and_load_nothing(case: str, tmp_path: Path) -> None:
    source, message = bad_source(case, tmp_path)
    if case == "a checkpoint of another model":  # the training code reads it (read_net_weights), not the models
        message = rf"{source} is a training checkpoint, not a state dict; read the network's weights with training"
    model = create_model("lenet5")
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises((ValueError, FileNotFoundError), match=message) as error:
        load_pretrained(model, source, "lenet5")
    assert "\n" not in str(error.value)
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


@pytest.mark.parametrize("case", BAD_CASES)
def test_the_training_job_refuses_bad_weights_in_one_line(case: str, tmp_path: Path, train_config) -> None:
    source, message = bad_source(case, tmp_path)
    if case == "another class count":  # the job's own fix: a finetune option
        message = (
            rf"{source} has a classifier for 7 classes, but the model has 10 \(data.num_classes=10\); to train a new "
            r"classifier on the pretrained network, choose finetune=fixed_features \(the classifier alone\) or "
            r"finetune=full \(every layer\)$"
        )
    with pytest.raises(UserError, match="^model.pretrained: " + message) as error:
        build(train_config(f"model.pretrained={source}"))
    assert "\n" not in str(error.value)


def test_pretrained_takes_a_path_or_torchvision() -> None:
    with pytest.raises(TypeError, match="pretrained takes a file path or 'torchvision', got True"):
        create_model("lenet5", pretrained=True)
