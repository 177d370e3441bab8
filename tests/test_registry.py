import inspect
import subprocess
import sys
import typing

import pytest
from omegaconf import OmegaConf
from torch import nn

import models
from conftest import ROOT
from models import LeNet5, create_model, list_models, register_model
from models.alexnet import AlexNet
from models.resnet import BasicBlock, CifarResNet, ResNet
from training.config import UserError, check_node


def test_list_models_lists_and_filters() -> None:
    assert "lenet5" in list_models()
    assert list_models("resnet*") == [
        "resnet18", "resnet20", "resnet32", "resnet34", "resnet44", "resnet50", "resnet56", "resnet101", "resnet110",
        "resnet152",
    ]  # fmt: skip
    assert list_models("vgg*")[:3] == ["vgg11", "vgg11_bn", "vgg13"]
    assert list_models("lenet*") == ["lenet5", "lenet5_paper"]
    assert list_models("nothing-like-this*") == []


def test_create_model_passes_arguments() -> None:
    model = create_model("lenet5", num_classes=7, in_channels=3, activation="relu", pool="max")
    assert isinstance(model, LeNet5)
    assert model.get_classifier().out_features == 7
    assert model.features.c1.in_channels == 3


def test_unknown_argument_lists_the_accepted_ones() -> None:
    with pytest.raises(TypeError, match=r"lenet5 takes no argument 'depth'; accepted: num_classes, in_channels"):
        create_model("lenet5", depth=3)


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown model 'lenet'; did you mean lenet5.*\? registered models: alexnet, .*lenet5",
    ):
        create_model("lenet")


def test_unknown_name_without_close_match_still_lists_models() -> None:
    with pytest.raises(
        ValueError, match=r"unknown model 'transformer'; registered models: alexnet, alexnet_tv, .*, lenet5, "
    ):
        create_model("transformer")


def test_a_name_registers_once() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_model
        def lenet5() -> nn.Module:  # same name as the real one
            return nn.Identity()

    assert isinstance(models.create_model("lenet5"), LeNet5)


def test_a_kwargs_builder_takes_what_its_class_takes_less_what_it_gives() -> None:
    resnet18, resnet50 = models.get_model_builder("resnet18"), models.get_model_builder("resnet50")
    parameters = inspect.signature(resnet50).parameters
    assert list(parameters) == [
        "num_classes", "in_channels", "zero_init_residual", "stride_on_1x1", "drop_path", "activation", "norm", "init",
        "init_std",
    ]  # fmt: skip
    assert "stride_on_1x1" not in inspect.signature(resnet18).parameters  # excluded: basic blocks
    assert typing.get_type_hints(resnet50)["stride_on_1x1"] is bool
    # a default of the builder's own replaces the class's
    assert inspect.signature(models.get_model_builder("vgg11_bn")).parameters["norm"].default == "batch"
    assert inspect.signature(models.get_model_builder("densenet_bc_100")).parameters["num_classes"].default == 10


def test_the_config_check_reads_a_kwargs_builders_type_hints() -> None:
    node = OmegaConf.create({"_target_": "models.create_model", "name": "resnet20", "init_std": "abc"})
    with pytest.raises(UserError, match=r"^model.init_std: expected float, got 'abc' \(str\)$"):
        check_node(node, "model")
    node = OmegaConf.create({"_target_": "models.create_model", "name": "resnet18", "stride_on_1x1": True})
    with pytest.raises(UserError, match=r"^model.stride_on_1x1: not an argument of models.resnet.resnet18; accepted: "):
        check_node(node, "model")


PASSES_KWARGS_ON = """
import inspect, typing
from omegaconf import OmegaConf
from torch import nn
from models import register_model
from training.config import UserError, check_node

class Switches(nn.Module):
    def __init__(self, num_classes: int = 10, activation: str = "relu") -> None:
        super().__init__()

class PassesSwitchesOn(Switches):
    def __init__(self, depth: int, width: int = 8, **kwargs: typing.Any) -> None:
        super().__init__(**kwargs)

@register_model
def passes_switches_on(**kwargs: typing.Any) -> PassesSwitchesOn:
    return PassesSwitchesOn(depth=2, **kwargs)

assert list(inspect.signature(passes_switches_on).parameters) == ["num_classes", "activation", "width"]
assert typing.get_type_hints(passes_switches_on)["activation"] is str
node = OmegaConf.create({"_target_": "models.create_model", "name": "passes_switches_on", "activation": 3})
try:
    check_node(node, "model")
except UserError as error:
    print(error)
"""


def test_a_kwargs_builder_takes_the_arguments_its_class_passes_on_to_its_base() -> None:
    # in a process of its own: the builder it registers stays registered
    result = subprocess.run([sys.executable, "-c", PASSES_KWARGS_ON], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "model.activation: expected str, got 3 (int)\n"


def test_a_family_takes_its_options_by_keyword_only() -> None:
    # torchvision's ResNet(block, layers, num_classes): a third positional argument is refused, not taken as an option
    with pytest.raises(TypeError, match="positional argument"):
        ResNet(BasicBlock, (2, 2, 2, 2), 10)
    with pytest.raises(TypeError, match="positional argument"):
        AlexNet(10)
    assert CifarResNet(3, 100).num_classes == 100 and LeNet5(num_classes=7, in_channels=3).in_channels == 3
