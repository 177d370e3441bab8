import inspect
from pathlib import Path

import pytest
import torch
import torchvision
from omegaconf import OmegaConf

from conftest import assert_same_outputs, count_parameters
from models import create_model, get_model_builder, load_torchvision_weights
from models.vgg import VGG

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "model"

PARAMETER_COUNTS = {
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,  # Table 2: 138 million
    "vgg19": 143_667_240,  # Table 2: 144 million
    "vgg11_bn": 132_868_840,
    "vgg13_bn": 133_053_736,
    "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
}
NAMES = list(PARAMETER_COUNTS)


def torchvision_model(name: str, **kwargs: object) -> torch.nn.Module:
    return getattr(torchvision.models, name)(weights=None, **kwargs)


def uninitialised_model(name: str) -> torch.nn.Module:
    """Our model with its memory allocated but left uninitialised, for the tests that load weights into it."""
    with torch.device("meta"):
        model = create_model(name)
    return model.to_empty(device="cpu")


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count(name: str) -> None:
    # Built on the meta device: the shapes without allocating or initialising 130-odd million weights.
    with torch.device("meta"):
        ours, theirs = create_model(name), torchvision_model(name)
    assert count_parameters(ours) == PARAMETER_COUNTS[name] == count_parameters(theirs)


@pytest.mark.parametrize("name", NAMES)
def test_torchvision_weights_fit_under_our_names(name: str) -> None:
    with torch.device("meta"):
        ours, theirs = create_model(name), torchvision_model(name)
    load_torchvision_weights(ours, theirs.state_dict())  # converts, then checks every key and shape


def test_torchvision_names_are_renamed_layer_by_layer() -> None:
    with torch.device("meta"):
        plain, with_bn = create_model("vgg16"), create_model("vgg16_bn")
    # torchvision's flat features: conv, relu, conv, relu, pool, conv, ... (with a batch norm after each conv in _bn)
    assert plain.torchvision_layer_names()["features.2"] == "features.stage1.conv2"
    assert plain.torchvision_layer_names()["features.5"] == "features.stage2.conv1"
    assert plain.torchvision_layer_names()["features.28"] == "features.stage5.conv3"
    assert with_bn.torchvision_layer_names()["features.4"] == "features.stage1.bn2"
    assert with_bn.torchvision_layer_names()["features.7"] == "features.stage2.conv1"
    assert with_bn.torchvision_layer_names()["features.41"] == "features.stage5.bn3"
    assert with_bn.torchvision_layer_names()["classifier.6"] == "classifier.fc8"


def test_round_trip_with_torchvision_at_32x32() -> None:
    torch.manual_seed(0)
    theirs = torchvision_model("vgg11_bn").eval()
    ours = uninitialised_model("vgg11_bn")
    load_torchvision_weights(ours, theirs.state_dict())
    assert_same_outputs(ours, theirs, torch.randn(2, 3, 32, 32))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_matches_torchvision_and_backpropagates_at_224(name: str) -> None:
    torch.manual_seed(0)
    theirs = torchvision_model(name).eval()
    ours = uninitialised_model(name)
    load_torchvision_weights(ours, theirs.state_dict())
    ours.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = theirs(x)
    logits = ours(x)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ours.parameters())


def test_forward_and_backward_at_224() -> None:
    model = create_model("vgg11_bn")
    logits = model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 1000)
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_classifier_interface_and_min_input_size() -> None:
    model = create_model("vgg11", num_classes=10)
    x = torch.randn(2, 3, 32, 32)  # min_input_size: the five pools leave 1x1
    assert model.min_input_size == 32
    assert model.forward_features(x).shape == (2, 512, 1, 1)
    assert model(x).shape == (2, 10)
    with pytest.raises(ValueError, match="needs images of at least 32x32 pixels"):
        model(torch.randn(2, 3, 31, 31))
    with pytest.raises(RuntimeError):  # what the size check guards against: a 0x0 map after the fifth pool
        model.forward_features(torch.randn(2, 3, 31, 31))
    assert model.get_classifier() is model.classifier.fc8
    model.reset_classifier(5)
    assert model(x).shape == (2, 5)
    assert model.num_classes == 5


def test_in_channels_and_dropout_knobs() -> None:
    with torch.device("meta"):
        model = create_model("vgg13", in_channels=1, dropout=0.2)
    assert model.features.stage1.conv1.in_channels == 1
    assert model.classifier.drop6.p == model.classifier.drop7.p == 0.2


def test_paper_init_of_configuration_a_draws_normal_weights_of_std_0_01_and_zero_biases() -> None:
    model = create_model("vgg11_bn")
    conv, fc = model.features.stage5.conv2, model.classifier.fc7
    for layer in (conv, fc):
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.01)
        assert layer.weight.mean().item() == pytest.approx(0.0, abs=1e-4)
        assert torch.count_nonzero(layer.bias) == 0
    assert torch.all(model.features.stage5.bn2.weight == 1) and torch.count_nonzero(model.features.stage5.bn2.bias) == 0


def test_paper_init_of_deeper_configurations_is_glorot() -> None:
    model = create_model("vgg16")
    conv = model.features.stage5.conv2  # Glorot: std = sqrt(2 / (fan_in + fan_out)), both 512 * 3 * 3
    assert conv.weight.std().item() == pytest.approx((2 / (2 * 512 * 9)) ** 0.5, rel=0.01)
    assert torch.count_nonzero(conv.bias) == 0


def test_named_init_scheme() -> None:
    model = uninitialised_model("vgg11")
    model.init_weights("kaiming_normal")
    conv = model.features.stage5.conv2  # fan_out = 512 * 3 * 3
    assert conv.weight.std().item() == pytest.approx((2 / (512 * 9)) ** 0.5, rel=0.01)


def test_bad_option_values_name_the_accepted_ones() -> None:
    with torch.device("meta"):
        with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
            create_model("vgg16", dropout=1.0)
        with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got -0.1"):
            create_model("vgg16", dropout=-0.1)
        with pytest.raises(ValueError, match="unknown init 'glorot'; accepted: paper, torch, xavier_uniform"):
            create_model("vgg16", init="glorot")
        with pytest.raises(ValueError, match="unknown VGG configuration 'C'; accepted: A, B, D, E"):
            VGG("C")


@pytest.mark.slow  # writes and reads half a gigabyte
def test_pretrained_loads_from_a_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    theirs = torchvision_model("vgg11", num_classes=10)
    path = tmp_path / "w.pth"
    torch.save(theirs.state_dict(), path)
    ours = create_model("vgg11", num_classes=10, init="torch", pretrained=path)
    torch.testing.assert_close(ours.features.stage3.conv2.weight, theirs.features[8].weight, atol=0, rtol=0)
    torch.testing.assert_close(ours.classifier.fc8.bias, theirs.classifier[6].bias, atol=0, rtol=0)


@pytest.mark.parametrize("other", ["resnet18", "vgg13"])
def test_other_architectures_weights_are_refused(other: str) -> None:
    with torch.device("meta"):
        weights = torchvision_model(other).state_dict()
        with pytest.raises(ValueError, match="nothing was loaded"):
            create_model("vgg11", pretrained=weights)


@pytest.mark.parametrize("name", NAMES)
def test_config_names_the_model_and_its_defaults(name: str) -> None:
    config = OmegaConf.load(CONFIG_DIR / f"{name}.yaml")
    assert config._target_ == "models.create_model" and config.name == name
    defaults = {key: p.default for key, p in inspect.signature(get_model_builder(name)).parameters.items()}
    assert set(config) - {"_target_", "name", "pretrained"} == set(defaults) and config.pretrained is None
    assert all(config[key] == defaults[key] for key in defaults if key not in ("num_classes", "in_channels"))
