"""AlexNet (alexnet, alexnet_tv) and ZFNet (zfnet)."""

import inspect
from pathlib import Path

import pytest
import torch
import torchvision
from omegaconf import OmegaConf

import models.zfnet  # noqa: F401
from conftest import CONFIG_DIR, build_on_meta, count_parameters
from models import create_model, get_model_builder, load_torchvision_weights
from models.alexnet import local_response_norm  # importing models.alexnet registers alexnet and alexnet_tv

NATIVE_SIZE = {"alexnet": 227, "alexnet_tv": 224, "zfnet": 224}


@torch.no_grad()
def forward_eval(model: torch.nn.Module, size: int, batch: int = 1) -> torch.Tensor:
    return model.eval()(torch.randn(batch, 3, size, size))


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        # conv1 34,944 + conv2 614,656 + conv3 885,120 + conv4 1,327,488 + conv5 884,992
        # + FC6 37,752,832 + FC7 16,781,312 + FC8 4,097,000
        ("alexnet", {}, 62_378_344),
        ("alexnet", {"norm": "none"}, 62_378_344),  # LRN has no parameters
        ("alexnet", {"norm": "batch"}, 62_378_344 + 2 * (96 + 256 + 384 + 384 + 256)),
        ("alexnet_tv", {}, 61_100_840),  # torchvision's num_params
        ("zfnet", {}, 62_357_608),  # AlexNet's count with conv1 14,208 (7x7) instead of 34,944 (11x11)
        # conv3 1,180,160 + conv4 4,719,616 + conv5 4,719,104 + FC6 75,501,568 (512x6x6 inputs)
        ("zfnet", {"wide": True}, 107_627_624),
    ],
)
def test_parameter_counts(name: str, options: dict, expected: int) -> None:
    assert count_parameters(build_on_meta(name, **options)) == expected


def test_alexnet_layer_order_follows_section_3_5() -> None:
    # ReLU after every conv; LRN after the ReLUs of conv1 and conv2; max-pools after them and after conv5.
    conv_stack = ["conv3", "act3", "conv4", "act4", "conv5", "act5", "pool5"]
    with_lrn = ["conv1", "act1", "norm1", "pool1", "conv2", "act2", "norm2", "pool2", *conv_stack]
    without_lrn = ["conv1", "act1", "pool1", "conv2", "act2", "pool2", *conv_stack]
    with_bn = ["conv1", "bn1", "act1", "pool1", "conv2", "bn2", "act2", "pool2"]
    with_bn += ["conv3", "bn3", "act3", "conv4", "bn4", "act4", "conv5", "bn5", "act5", "pool5"]

    def layers(name: str, **options: object) -> list[str]:
        return [layer for layer, _ in build_on_meta(name, **options).features.named_children()]

    assert layers("alexnet") == layers("alexnet_tv", norm="local_response") == with_lrn
    assert layers("alexnet", norm="none") == layers("alexnet_tv") == without_lrn
    assert layers("alexnet", norm="batch") == layers("alexnet_tv", norm="batch") == with_bn
    model = build_on_meta("alexnet")
    assert all(isinstance(getattr(model.features, f"act{i}"), torch.nn.ReLU) for i in range(1, 6))
    assert isinstance(model.features.norm1, torch.nn.LocalResponseNorm)


def test_zfnet_normalises_after_pool1_and_pool2() -> None:
    def layers(**options: object) -> list[str]:
        return [layer for layer, _ in build_on_meta("zfnet", **options).features.named_children()]

    assert layers()[:8] == ["conv1", "act1", "pool1", "norm1", "conv2", "act2", "pool2", "norm2"]
    assert layers(norm="batch")[:8] == ["conv1", "bn1", "act1", "pool1", "conv2", "bn2", "act2", "pool2"]
    assert "norm1" not in layers(norm="none") and "bn1" not in layers(norm="none")


def test_lrn_computes_section_3_3() -> None:
    # b_i = a_i / (k + alpha * sum of a_j^2 for j within 2 maps of i)^beta, with k=2, alpha=1e-4, beta=0.75.
    a = 10 * torch.randn(2, 7, 3, 3)
    squares = torch.nn.functional.pad(a.pow(2), (0, 0, 0, 0, 2, 2))  # zero maps beyond the edges
    window_sums = torch.stack([squares[:, i : i + 5].sum(dim=1) for i in range(7)], dim=1)
    expected = a / (2 + 1e-4 * window_sums).pow(0.75)
    torch.testing.assert_close(local_response_norm()(a), expected)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "options"), [("alexnet", {}), ("alexnet_tv", {}), ("zfnet", {}), ("zfnet", {"wide": True})]
)
def test_forward_and_backward_at_the_native_size(name: str, options: dict) -> None:
    model = create_model(name, **options)
    size = NATIVE_SIZE[name]
    logits = model(torch.randn(1, 3, size, size))
    assert logits.shape == (1, 1000)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_forward_and_backward_at_a_small_input() -> None:
    model = create_model("alexnet_tv", num_classes=10)
    logits = model(torch.randn(2, 3, 63, 63))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", ["alexnet", "alexnet_tv", "zfnet"])
def test_classifier_interface(name: str) -> None:
    model = create_model(name).eval()
    x = torch.randn(1, 3, NATIVE_SIZE[name], NATIVE_SIZE[name])
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (1, 256, 6, 6)
        assert model.get_classifier() is model.classifier.fc8
        assert model.forward_head(features).shape == (1, 1000)
        model.reset_classifier(5)
        assert model.get_classifier().out_features == 5
        assert model.forward_head(features).shape == (1, 5)


@pytest.mark.parametrize(("name", "smallest", "largest"), [("alexnet", 227, 258), ("zfnet", 207, 238)])
def test_paper_networks_take_the_sizes_that_give_fc6_its_6x6_maps(name: str, smallest: int, largest: int) -> None:
    model = create_model(name, num_classes=10)
    assert (model.min_input_size, model.max_input_size) == (smallest, largest)
    assert forward_eval(model, smallest).shape == (1, 10)
    assert forward_eval(model, largest).shape == (1, 10)
    with pytest.raises(ValueError, match=rf"needs images of at least {smallest}x{smallest} pixels"):
        forward_eval(model, smallest - 1)
    with pytest.raises(
        ValueError, match=rf"takes images of {smallest} to {largest} pixels a side.* got {largest + 1}x"
    ):
        forward_eval(model, largest + 1)
    with pytest.raises(ValueError, match=rf"got {smallest}x{largest + 1}; resize the data"):
        model(torch.randn(1, 3, smallest, largest + 1))


def test_alexnet_tv_min_input_size() -> None:
    model = create_model("alexnet_tv", num_classes=10)
    assert model.min_input_size == 63
    assert forward_eval(model, 63).shape == (1, 10)
    assert forward_eval(model, 300).shape == (1, 10)  # the adaptive pool takes any larger size
    with pytest.raises(ValueError, match="needs images of at least 63x63 pixels"):
        forward_eval(model, 62)


def test_alexnet_paper_init_follows_section_5() -> None:
    torch.manual_seed(0)
    model = create_model("alexnet", init="paper")
    layers = {
        name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Conv2d | torch.nn.Linear)
    }
    for layer in layers.values():
        assert layer.weight.mean().abs() < 2e-3
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.05)
    biases = {name.split(".")[-1]: layer.bias.unique().tolist() for name, layer in layers.items()}
    assert biases == {
        "conv1": [0.0],
        "conv2": [1.0],
        "conv3": [0.0],
        "conv4": [1.0],
        "conv5": [1.0],
        "fc6": [1.0],
        "fc7": [1.0],
        "fc8": [0.0],
    }


def test_zfnet_paper_init_follows_section_3() -> None:
    torch.manual_seed(0)
    for module in create_model("zfnet", init="paper").modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            assert module.weight.std().item() == pytest.approx(0.01, rel=0.05)
            assert not module.bias.any()


def test_alexnet_tv_paper_init_is_pytorchs_default() -> None:
    # torchvision does not re-initialise AlexNet, so "paper" keeps the weights the constructors drew.
    torch.manual_seed(0)
    paper = create_model("alexnet_tv", init="paper")
    torch.manual_seed(0)
    default = create_model("alexnet_tv", init="torch")
    assert all(torch.equal(a, b) for a, b in zip(paper.parameters(), default.parameters(), strict=True))


@pytest.mark.parametrize("name", ["alexnet", "zfnet"])
def test_named_init_schemes_replace_the_paper_init(name: str) -> None:
    model = create_model(name, init="kaiming_normal")
    conv2 = model.features.conv2
    assert not conv2.bias.any()  # the paper's init makes these biases 1 in AlexNet
    fan_out = conv2.weight.shape[0] * 25
    assert conv2.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("alexnet", {"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ("alexnet_tv", {"dropout": -0.1}, r"dropout must be in \[0, 1\), got -0.1"),
        ("zfnet", {"dropout": 2}, r"dropout must be in \[0, 1\), got 2"),
        (
            "alexnet",
            {"norm": "group"},
            "norm='group' is not available for AlexNet; accepted: local_response, batch, none",
        ),
        ("alexnet", {"dropconnect": 1.0}, r"dropconnect must be in \[0, 1\), got 1.0"),
        ("zfnet", {"wide": 1}, "wide must be true or false, got 1"),
        ("alexnet", {"init": "gaussian"}, "unknown init 'gaussian'; accepted: paper, torch, xavier_uniform"),
        ("zfnet", {"init": "he"}, "unknown init 'he'; accepted: paper, torch"),
    ],
)
def test_bad_option_values_name_the_accepted_ones(name: str, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_on_meta(name, **options)


@pytest.fixture(scope="module")
def torchvision_alexnet() -> torchvision.models.AlexNet:
    torch.manual_seed(0)
    return torchvision.models.alexnet(weights=None).eval()


def test_alexnet_tv_loads_torchvision_weights_with_equal_outputs(torchvision_alexnet) -> None:
    ours = create_model("alexnet_tv")
    load_torchvision_weights(ours, torchvision_alexnet.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), torchvision_alexnet(x), atol=1e-5, rtol=1e-5)


def test_alexnet_tv_loads_torchvision_weights_from_a_file(torchvision_alexnet, tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save(torchvision_alexnet.state_dict(), path)
    ours = create_model("alexnet_tv", pretrained=path)
    assert torch.equal(ours.features.conv2.weight, torchvision_alexnet.features[3].weight)
    assert torch.equal(ours.classifier.fc8.bias, torchvision_alexnet.classifier[6].bias)


def test_other_architectures_weights_load_nothing(torchvision_alexnet) -> None:
    squeezenet = torchvision.models.squeezenet1_1(weights=None).state_dict()
    with pytest.raises(ValueError, match="nothing was loaded"):
        load_torchvision_weights(build_on_meta("alexnet_tv"), squeezenet)
    # torchvision's AlexNet is not the paper's: different widths, LRN layers and conv1 sizes.
    for name in ("alexnet", "zfnet"):
        with pytest.raises(ValueError, match="nothing was loaded"):
            load_torchvision_weights(build_on_meta(name), torchvision_alexnet.state_dict())


@pytest.mark.parametrize("name", ["alexnet", "alexnet_tv", "zfnet"])
def test_config_lists_every_option_with_its_default(name: str) -> None:
    config = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml"))
    builder = inspect.signature(get_model_builder(name)).parameters
    knobs = {key: parameter.default for key, parameter in builder.items() if key not in ("num_classes", "in_channels")}
    assert config == {
        "_target_": "models.create_model",
        "name": name,
        "num_classes": "${data.num_classes}",
        "in_channels": "${data.in_channels}",
        "pretrained": None,
        **knobs,
    }
