import pytest
from torch import nn

import models
from models import LeNet5, create_model, list_models, register_model


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
