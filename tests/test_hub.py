"""torch.hub: hubconf.py has an entry point for every registered model, taking ``pretrained`` and the builder's
keyword arguments."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torchvision

import models
from conftest import ROOT, assert_same_outputs

# read as torch.hub reads it: from the repository's top level, which is not on the import path of pytest
_spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
hubconf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hubconf)


def hub_load(name: str, **kwargs: object) -> torch.nn.Module:
    return torch.hub.load(str(ROOT), name, source="local", **kwargs)


def test_hubconf_has_an_entry_point_per_registered_model() -> None:
    assert hubconf.dependencies == ["torch", "torchvision"]
    entry_points = [name for name in dir(hubconf) if inspect.isfunction(getattr(hubconf, name))]
    assert sorted(name for name in entry_points if not name.startswith("_")) == sorted(models.list_models())
    for name in models.list_models():
        entry_point = getattr(hubconf, name)
        builder = inspect.signature(models.get_model_builder(name)).parameters
        assert entry_point.__name__ == name
        assert list(inspect.signature(entry_point).parameters) == ["pretrained", *builder]
        assert entry_point.__doc__.startswith(inspect.getdoc(models.get_model_builder(name)))
        assert "pretrained:" in entry_point.__doc__


@pytest.mark.parametrize("name", models.list_models())
def test_torch_hub_loads_every_model(name: str) -> None:
    with torch.device("meta"):  # the network as built, without allocating or initialising its weights
        model = hub_load(name, num_classes=7)
        reference = models.create_model(name, num_classes=7)
    assert type(model) is type(reference) and model.num_classes == 7
    assert {key: value.shape for key, value in model.state_dict().items()} == {
        key: value.shape for key, value in reference.state_dict().items()
    }


def test_torch_hub_loads_pretrained_weights_as_create_model_does(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = models.create_model("resnet20", num_classes=4)
    path = tmp_path / "resnet20.safetensors"
    safetensors.torch.save_file(trained.state_dict(), path)
    model = hub_load("resnet20", num_classes=4, pretrained=str(path))
    reference = models.load_pretrained(models.create_model("resnet20", num_classes=4), path, "resnet20")
    assert all(torch.equal(value, reference.state_dict()[key]) for key, value in model.state_dict().items())

    theirs = torchvision.models.resnet18(weights=None, num_classes=3)
    torch.save(theirs.state_dict(), tmp_path / "resnet18.pth")
    model = hub_load("resnet18", num_classes=3, pretrained=tmp_path / "resnet18.pth")
    assert_same_outputs(model, theirs, torch.randn(1, 3, 64, 64))


def test_hub_entry_points_name_what_they_do_not_take() -> None:
    with pytest.raises(TypeError, match=r"lenet5 takes no argument 'depth'; accepted: num_classes, in_channels"):
        hub_load("lenet5", depth=3)
