import inspect
from pathlib import Path

import pytest
import torch
import torchvision
from omegaconf import OmegaConf

import models.googlenet
from conftest import CONFIG_DIR, assert_same_outputs, count_parameters
from models import create_model, get_model_builder, load_torchvision_weights
from models.googlenet import GoogLeNet, GoogLeNetTV
from training.config import instantiate

NAMES = ("googlenet", "googlenet_tv")


def torchvision_googlenet(**kwargs: object) -> torch.nn.Module:
    return torchvision.models.googlenet(weights=None, init_weights=True, **kwargs)


@pytest.mark.parametrize(
    ("name", "aux_logits", "expected"),
    [
        ("googlenet", True, 13_378_280),
        ("googlenet", False, 6_998_552),
        ("googlenet_tv", True, 13_004_888),
        ("googlenet_tv", False, 6_624_904),
    ],
)
def test_parameter_counts(name: str, aux_logits: bool, expected: int) -> None:
    assert count_parameters(create_model(name, aux_logits=aux_logits)) == expected


def test_weights_per_table_1_row() -> None:
    # Table 1's "params" column: weights without biases, in units of 1024. Ours follow from its channel numbers;
    # the paper prints conv1 2.7K, 4a 364K, 4c 463K, 4d 580K, 4e 840K, 5a 1072K, 5b 1388K, 6,797.7K in all.
    model = create_model("googlenet", aux_logits=False)
    rows = {"conv1": [model.conv1], "conv2": [model.conv2_reduce, model.conv2], "linear": [model.classifier]}
    rows |= {
        name: [getattr(model, f"inception{name}")] for name in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
    }
    weights = {
        row: sum(p.numel() for module in modules for name, p in module.named_parameters() if name.endswith("weight"))
        for row, modules in rows.items()
    }
    assert {row: count / 1024 for row, count in weights.items()} == {
        "conv1": 9.1875,
        "conv2": 112.0,  # Table 1: 112K
        "linear": 1000.0,  # 1000K
        "3a": 159.5,  # 159K
        "3b": 379.0,  # 380K
        "4a": 366.75,
        "4b": 438.0,  # 437K
        "4c": 497.5,
        "4d": 590.5,
        "4e": 847.0,
        "5a": 1018.0,
        "5b": 1409.0,
    }
    assert sum(weights.values()) == 6_990_272  # 6,826.4K against Table 1's 6,797.7K


@pytest.mark.parametrize("name", NAMES)
def test_inception_branches_follow_the_variant(name: str) -> None:
    model = create_model(name)
    five = model.inception3a.conv5x5
    assert five.conv.kernel_size == ((5, 5) if name == "googlenet" else (3, 3))
    assert (five.conv.bias is None) == hasattr(five, "bn") == (name == "googlenet_tv")
    assert isinstance(model.norm1, torch.nn.LocalResponseNorm) == (name == "googlenet")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in create_model("googlenet").modules())


@pytest.mark.parametrize("name", NAMES)
def test_forward_returns_aux_logits_only_in_training(name: str) -> None:
    x = torch.randn(2, 3, 96, 96)
    model = create_model(name, num_classes=7).train()
    outputs = model(x)
    assert type(outputs) is tuple and [out.shape for out in outputs] == [(2, 7)] * 3
    assert model.eval()(x).shape == (2, 7)
    without_aux = create_model(name, num_classes=7, aux_logits=False).train()
    assert without_aux.aux1 is None and without_aux.aux2 is None
    assert without_aux(x).shape == (2, 7)


@pytest.mark.parametrize("name", NAMES)
def test_forward_and_backward_at_224_reach_every_parameter(name: str) -> None:
    model = create_model(name).train()
    logits, aux1, aux2 = model(torch.randn(1, 3, 224, 224))
    (logits.sum() + 0.3 * (aux1.sum() + aux2.sum())).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_one_input_channel() -> None:
    model = create_model("googlenet", in_channels=1, num_classes=10, aux_logits=False)
    assert model(torch.randn(2, 1, 96, 96)).shape == (2, 10)


@pytest.mark.parametrize("name", NAMES)
def test_classifier_interface(name: str) -> None:
    model = create_model(name).train()
    x = torch.randn(2, 3, 96, 96)
    assert model.forward_features(x).shape == (2, 1024, 3, 3)
    assert model.get_classifier() is model.classifier
    model.reset_classifier(5)
    assert model.num_classes == 5
    assert [out.shape for out in model(x)] == [(2, 5)] * 3
    assert model.aux1.classifier.out_features == model.aux2.classifier.out_features == 5
    without_aux = create_model(name, aux_logits=False)
    without_aux.reset_classifier(5)
    assert without_aux(x).shape == (2, 5)


def test_paper_init_is_xavier_uniform_with_zero_biases() -> None:
    model = create_model("googlenet")
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(module.weight)
            assert module.weight.abs().max() <= (6 / (fan_in + fan_out)) ** 0.5
            assert torch.count_nonzero(module.bias) == 0
    assert model.inception5b.conv1x1.conv.weight.std().item() == pytest.approx((2 / (832 + 384)) ** 0.5, rel=0.02)


@pytest.mark.parametrize("aux_logits", [True, False])
def test_tv_paper_init_is_torchvisions(aux_logits: bool) -> None:
    torch.manual_seed(0)
    theirs = torchvision_googlenet(aux_logits=aux_logits)
    torch.manual_seed(0)
    ours = create_model("googlenet_tv", aux_logits=aux_logits)
    converted = ours.convert_torchvision_state_dict(theirs.state_dict())
    assert converted.keys() == ours.state_dict().keys()
    assert all(torch.equal(value, converted[key]) for key, value in ours.state_dict().items())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("init", ["torch", "xavier_normal", "kaiming_normal"])
def test_other_init_schemes(name: str, init: str) -> None:
    model = create_model(name, init=init, aux_logits=False)
    assert model(torch.randn(1, 3, 96, 96)).isfinite().all()


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("googlenet", {"aux_logits": "yes"}, r"aux_logits must be True or False, got 'yes'"),
        ("googlenet", {"dropout": 1.5}, r"dropout probability has to be between 0 and 1, but got 1.5"),
        ("googlenet", {"aux_dropout": -0.1}, r"dropout probability has to be between 0 and 1"),
        ("googlenet", {"init": "he"}, r"unknown init 'he'; accepted: paper, torch, xavier_uniform"),
        ("googlenet", {"num_classes": 0}, r"num_classes must be a positive integer"),
        ("googlenet_tv", {"transform_input": 1}, r"transform_input must be True or False, got 1"),
        ("googlenet_tv", {"transform_input": True, "in_channels": 1}, r"needs in_channels=3, got 1"),
        ("googlenet_tv", {"aux_logits": None}, r"aux_logits must be True or False, got None"),
    ],
)
def test_bad_options_name_the_accepted_values(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_model(name, **kwargs)


@pytest.mark.parametrize(("name", "min_size"), [("googlenet", 79), ("googlenet_tv", 15)])
def test_min_input_size(name: str, min_size: int) -> None:
    model = create_model(name, num_classes=3)
    assert model.min_input_size == min_size
    x = torch.randn(2, 3, min_size, min_size)  # batch 2: batch norm in training needs more than one value
    assert [out.shape for out in model.train()(x)] == [(2, 3)] * 3
    assert model.eval()(x).shape == (2, 3)
    with pytest.raises(ValueError, match=f"needs images of at least {min_size}x{min_size} pixels"):
        model(torch.randn(2, 3, min_size - 1, min_size - 1))


def test_googlenet_aux_heads_need_a_5x5_map_on_4a() -> None:
    # 79 is the least input giving a 5x5 map on 4a; at 78 it is 4x4, below the aux heads' 5x5 average pool
    model = create_model("googlenet").train()
    model.min_input_size = 1
    sizes = []
    model.inception4a.register_forward_hook(lambda module, inputs, output: sizes.append(output.shape[-1]))
    model(torch.randn(2, 3, 79, 79))
    with pytest.raises(RuntimeError, match="Output size is too small"):
        model(torch.randn(2, 3, 78, 78))
    assert sizes == [5, 4]
    model.eval()(torch.randn(1, 3, 31, 31))  # without the aux heads, 31 would do


@pytest.mark.parametrize("aux_logits", [True, False])
def test_torchvision_weights_give_the_same_outputs(aux_logits: bool) -> None:
    torch.manual_seed(0)
    theirs = torchvision_googlenet(aux_logits=aux_logits, num_classes=10)
    ours = create_model("googlenet_tv", aux_logits=aux_logits, num_classes=10, init="torch")
    load_torchvision_weights(ours, theirs.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), atol=1e-5, rtol=1e-5)
        torch.manual_seed(1)
        ours_train = ours.train()(x)
        torch.manual_seed(1)
        theirs_train = theirs.train()(x)
    if aux_logits:  # torchvision's tuple is (logits, aux2, aux1), named
        theirs_train = (theirs_train.logits, theirs_train.aux_logits1, theirs_train.aux_logits2)
    torch.testing.assert_close(ours_train, theirs_train, atol=1e-5, rtol=1e-5)


def test_torchvision_transform_input() -> None:
    torch.manual_seed(0)
    theirs = torchvision_googlenet(aux_logits=False, transform_input=True).eval()
    ours = create_model("googlenet_tv", aux_logits=False, transform_input=True).eval()
    load_torchvision_weights(ours, theirs.state_dict())
    assert_same_outputs(ours, theirs, torch.randn(1, 3, 224, 224))


def test_torchvision_aux_weights_are_dropped_without_aux_heads() -> None:
    # torchvision's pretrained file carries aux heads; its loader drops them when aux_logits=False, as we do
    theirs = torchvision_googlenet(aux_logits=True)
    ours = create_model("googlenet_tv", aux_logits=False)
    load_torchvision_weights(ours, theirs.state_dict())
    torch.testing.assert_close(ours.classifier.weight, theirs.fc.weight)
    with pytest.raises(ValueError, match=r"nothing was loaded. missing \(20\): aux1.conv.conv.weight"):
        load_torchvision_weights(create_model("googlenet_tv"), torchvision_googlenet(aux_logits=False).state_dict())


def test_weights_load_from_a_file(tmp_path: Path) -> None:
    theirs = torchvision_googlenet(num_classes=4)
    torch.save(theirs.state_dict(), tmp_path / "w.pth")
    ours = create_model("googlenet_tv", num_classes=4, pretrained=tmp_path / "w.pth")
    torch.testing.assert_close(ours.inception3a.conv3x3.conv.weight, theirs.inception3a.branch2[1].conv.weight)
    torch.testing.assert_close(ours.aux2.classifier.bias, theirs.aux2.fc2.bias)


def test_other_architectures_weights_are_refused() -> None:
    tv_weights = torchvision_googlenet().state_dict()
    with pytest.raises(ValueError, match="GoogLeNet; nothing was loaded"):
        load_torchvision_weights(create_model("googlenet"), tv_weights)
    with pytest.raises(ValueError, match="GoogLeNetTV; nothing was loaded"):
        load_torchvision_weights(create_model("googlenet_tv"), torchvision.models.resnet18(weights=None).state_dict())


@pytest.mark.parametrize(("name", "cls"), [("googlenet", GoogLeNet), ("googlenet_tv", GoogLeNetTV)])
def test_config_lists_every_option_with_its_default(name: str, cls: type) -> None:
    cfg = OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml")
    defaults = {
        key: param.default
        for key, param in inspect.signature(get_model_builder(name)).parameters.items()
        if key not in ("num_classes", "in_channels")
    }
    assert {key: cfg[key] for key in defaults} == defaults
    cfg.num_classes, cfg.in_channels = 10, 3
    assert type(instantiate(cfg, "model")) is cls


def test_without_aux_heads_the_paper_network_takes_inputs_down_to_31_pixels() -> None:
    model = models.create_model("googlenet", aux_logits=False, num_classes=3)
    assert model(torch.randn(2, 3, 31, 31)).shape == (2, 3)
    with pytest.raises(ValueError, match="needs images of at least 31x31 pixels"):
        model(torch.randn(2, 3, 30, 30))
    assert models.create_model("googlenet_tv", aux_logits=False).min_input_size == 15
