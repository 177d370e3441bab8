"""The training-trick switches of the CNN families: ``activation``, ``norm`` and ``dropconnect``, as builder arguments
and as config groups (``activation=elu``, ``norm=group``) of scripts/train.py."""

from collections import Counter
from pathlib import Path

import pytest
import torch
import torchvision
from omegaconf import OmegaConf
from torch import nn
from torch.overrides import TorchFunctionMode

from conftest import CONFIG_DIR, FAST_DATA, assert_same_outputs, build_on_meta, run_script
from models import (
    ACTIVATIONS,
    NORMS,
    ChannelMaxout,
    DropConnectLinear,
    ScaledTanh,
    create_model,
    load_torchvision_weights,
    make_norm,
)
from test_activations import EXPECTED_TYPES as ACTIVATION_TYPES
from training.cli import check_overrides
from training.config import UserError
from training.tasks import build, train

# one model per family class that takes a norm, and the norms each accepts, in the order of its error message
ACCEPTED_NORMS = {
    "lenet5": ("none", "batch"),
    "alexnet": ("local_response", "batch", "none"),
    "alexnet_tv": ("none", "local_response", "batch"),
    "zfnet": ("local_response", "batch", "none"),
    "vgg11": ("none", "batch", "group", "layer"),
    "vgg11_bn": ("none", "batch", "group", "layer"),
    "googlenet": ("local_response", "batch", "none"),
    "resnet18": ("batch", "group", "layer"),
    "resnet50": ("batch", "group", "layer"),
    "resnet20": ("batch", "group", "layer"),
    "densenet121": ("batch", "group", "layer"),
    "densenet_bc_100": ("batch", "group", "layer"),
    "squeezenet1_0": ("none", "batch"),
    "squeezenet1_1": ("none", "batch"),
    "wrn_16_8": ("batch", "group", "layer"),
    "nin_cifar10": ("none", "batch"),
    "inception_v3": ("batch", "group", "layer", "none"),
}
FAMILIES = [*ACCEPTED_NORMS, "googlenet_tv"]  # the ones that take every activation
# the networks whose layers are their reference's, with the switches they do not take
FIXED = {"lenet5_paper": ("activation", "norm"), "googlenet_tv": ("norm",)}
# the smallest input each takes, and whether a forward pass there is quick on a CPU
INPUTS = {
    "lenet5": (1, 32, True),
    "alexnet": (3, 227, False),
    "alexnet_tv": (3, 63, False),
    "zfnet": (3, 207, False),
    "vgg11": (3, 32, False),
    "vgg11_bn": (3, 32, False),
    "googlenet": (3, 79, True),
    "googlenet_tv": (3, 32, True),
    "resnet18": (3, 16, True),
    "resnet50": (3, 16, False),
    "resnet20": (3, 8, True),
    "densenet121": (3, 29, False),
    "densenet_bc_100": (3, 8, True),
    "squeezenet1_0": (3, 21, True),
    "squeezenet1_1": (3, 17, True),
    "wrn_16_8": (3, 8, True),
    "nin_cifar10": (3, 4, True),
    "inception_v3": (3, 299, False),  # 299 in training with its aux head
}


def forward_cases(names: list[str], options: dict[str, tuple[str, ...]]) -> list:
    """(name, option) pairs, the ones of the big networks marked slow."""
    return [
        pytest.param(name, option, marks=() if INPUTS[name][2] else pytest.mark.slow)
        for name in names
        for option in options[name]
    ]


def default_activation(name: str) -> type[nn.Module]:
    return nn.Tanh if name == "lenet5" else nn.ReLU


def modules_of(model: nn.Module, kind: type[nn.Module]) -> list[nn.Module]:
    return [module for module in model.modules(remove_duplicate=False) if type(module) is kind]


class FunctionNames(TorchFunctionMode):
    """Records the names of the torch functions called inside it (``relu``, ``conv2d``, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.add(getattr(func, "__name__", ""))
        return func(*args, **(kwargs or {}))


def run_forward_backward(model: nn.Module, name: str, batch: int = 2) -> FunctionNames:
    """One training step's forward and backward; every parameter must get a finite gradient."""
    channels, size, _ = INPUTS[name]
    with FunctionNames() as functions:
        out = model.train()(torch.randn(batch, channels, size, size))
        logits = out if isinstance(out, torch.Tensor) else torch.cat(out)
        nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    return functions


# activation


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("name", FAMILIES)
def test_activation_replaces_every_nonlinearity_with_a_module_of_its_own(name: str, activation: str) -> None:
    default = default_activation(name)
    places = len(modules_of(build_on_meta(name), default))
    model = build_on_meta(name, activation=activation)
    chosen = modules_of(model, ACTIVATION_TYPES[activation])
    assert places > 0 and len(chosen) == places
    assert len({id(module) for module in chosen}) == places  # no module serves two places
    if ACTIVATION_TYPES[activation] is not default:
        assert not modules_of(model, default)


@pytest.mark.parametrize("name", FAMILIES)
def test_default_activation_keeps_the_parameter_count(name: str) -> None:
    default = "tanh" if name == "lenet5" else "relu"
    count = sum(p.numel() for p in build_on_meta(name).parameters())
    assert sum(p.numel() for p in build_on_meta(name, activation=default).parameters()) == count
    # PReLU adds one parameter per channel of each place, maxout two per piece
    prelu = sum(p.numel() for p in build_on_meta(name, activation="prelu").parameters()) - count
    maxout = sum(p.numel() for p in build_on_meta(name, activation="maxout").parameters()) - count
    assert prelu > 0 and maxout == 4 * prelu


@pytest.mark.parametrize(("name", "activation"), forward_cases(FAMILIES, dict.fromkeys(FAMILIES, ACTIVATIONS)))
def test_every_activation_trains_every_family(name: str, activation: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, activation=activation, num_classes=3, in_channels=INPUTS[name][0])
    calls = Counter()
    for module in modules_of(model, ACTIVATION_TYPES[activation]):
        module.register_forward_hook(lambda module, args, out: calls.update([id(module)]))
    functions = run_forward_backward(model, name)
    assert sorted(calls.values()) == [1] * len(modules_of(model, ACTIVATION_TYPES[activation]))  # each place once
    # no nonlinearity is applied outside the activation modules (e.g. by a functional F.relu)
    default = "tanh" if name == "lenet5" else "relu"
    assert (default in functions.names) == (activation == default or (default, activation) == ("tanh", "scaled_tanh"))


def test_lenet5_paper_keeps_its_scaled_tanh() -> None:
    assert len(modules_of(build_on_meta("lenet5_paper"), ScaledTanh)) == 6


@pytest.mark.parametrize(("name", "switches"), FIXED.items())
def test_a_fixed_switch_is_no_argument(name: str, switches: tuple[str, ...]) -> None:
    for switch in switches:
        with pytest.raises(TypeError) as error:
            build_on_meta(name, **{switch: "relu" if switch == "activation" else "batch"})
        assert str(error.value).startswith(f"{name} takes no argument '{switch}'; accepted: num_classes, in_channels")


def test_unknown_activation_lists_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="unknown activation 'swish'; accepted: sigmoid, tanh, scaled_tanh, relu"):
        build_on_meta("resnet20", activation="swish")


# norm


def norm_kinds(model: nn.Module) -> Counter:
    """How many normalisation layers of each kind ``model`` has."""
    kinds = Counter()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            kinds["batch"] += 1
        elif isinstance(module, nn.GroupNorm) and module.num_groups == 1:
            kinds["layer"] += 1
        elif isinstance(module, nn.GroupNorm):
            assert module.num_groups == make_norm("group", module.num_channels).num_groups > 1
            kinds["group"] += 1
        elif isinstance(module, nn.LocalResponseNorm):
            kinds["local_response"] += 1
    return kinds


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", ACCEPTED_NORMS)
def test_each_norm_is_built_or_refused_in_one_line(name: str, norm: str) -> None:
    accepted = ACCEPTED_NORMS[name]
    if norm not in accepted:
        with pytest.raises(ValueError) as error:
            build_on_meta(name, norm=norm)
        model = type(build_on_meta(name)).__name__
        assert str(error.value) == f"norm='{norm}' is not available for {model}; accepted: {', '.join(accepted)}"
        return
    kinds = norm_kinds(build_on_meta(name, norm=norm))
    assert set(kinds) == (set() if norm == "none" else {norm})


@pytest.mark.parametrize(
    "name", ["lenet5", "alexnet", "alexnet_tv", "zfnet", "vgg11", "googlenet", "squeezenet1_0", "nin_cifar10"]
)
def test_batch_norm_follows_every_conv(name: str) -> None:
    model = build_on_meta(name, norm="batch")
    convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    # LeNet-5 normalises F6 as well; SqueezeNet not conv10, NiN not its last 1x1 conv: their maps are the class scores
    assert norm_kinds(model)["batch"] == len(convs) + {"lenet5": 1, "squeezenet1_0": -1, "nin_cifar10": -1}.get(name, 0)
    if name == "googlenet":  # its convs then lose their bias, as in torchvision's GoogLeNet
        assert all(conv.bias is None for conv in convs)


@pytest.mark.parametrize(
    "name", ["vgg11", "resnet18", "resnet50", "resnet20", "densenet121", "densenet_bc_100", "wrn_16_8"]
)
def test_group_and_layer_norm_replace_every_batch_norm_with_as_many_parameters(name: str) -> None:
    batch = build_on_meta(name, norm="batch")
    count = sum(p.numel() for p in batch.parameters())
    for norm in ("group", "layer"):
        model = build_on_meta(name, norm=norm)
        assert norm_kinds(model)[norm] == norm_kinds(batch)["batch"]
        assert sum(p.numel() for p in model.parameters()) == count


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("vgg16", {"norm": "batch"}, 138_365_992),  # vgg16_bn's count
        ("vgg16_bn", {"norm": "none"}, 138_357_544),  # vgg16's
        ("resnet20", {"norm": "group"}, 269_722),
        ("densenet_bc_100", {"norm": "layer"}, 769_162),
        ("squeezenet1_0", {"norm": "batch"}, 1_248_424 + 2 * 2976),  # 96 + the 2880 maps of the Fire convs
        ("googlenet", {"norm": "none"}, 13_378_280),  # LocalRespNorm has no parameters
    ],
)
def test_parameter_counts_with_another_norm(name: str, options: dict, expected: int) -> None:
    assert sum(p.numel() for p in build_on_meta(name, **options).parameters()) == expected


def test_group_count_is_32_or_the_largest_divisor_leaving_two_channels_a_group() -> None:
    groups = [make_norm("group", c).num_groups for c in (1, 2, 6, 16, 24, 36, 64, 96, 256, 1024)]
    assert groups == [1, 1, 3, 8, 12, 18, 32, 32, 32, 32]


@pytest.mark.parametrize(("name", "norm"), forward_cases(list(ACCEPTED_NORMS), ACCEPTED_NORMS))
def test_every_accepted_norm_trains(name: str, norm: str) -> None:
    torch.manual_seed(0)
    run_forward_backward(create_model(name, norm=norm, num_classes=3, in_channels=INPUTS[name][0]), name)


# dropconnect


def masked_weights(layer: DropConnectLinear) -> torch.Tensor:
    """The weights ``layer`` uses in one forward pass, read off its outputs for the unit inputs."""
    with torch.no_grad():
        return (layer(torch.eye(layer.in_features)) - layer.bias).T


def test_dropconnect_masks_weights_in_training_and_uses_all_of_them_at_eval() -> None:
    torch.manual_seed(0)
    layer = DropConnectLinear(50, 40, p=0.5)
    linear = nn.Linear(50, 40)
    assert layer.state_dict().keys() == linear.state_dict().keys()
    linear.load_state_dict(layer.state_dict())
    first, second = masked_weights(layer), masked_weights(layer)
    assert not torch.equal(first, second)  # a new mask each pass
    kept = first != 0
    assert kept.float().mean().item() == pytest.approx(0.5, abs=0.05)  # 2000 weights, each dropped with p = 0.5
    torch.testing.assert_close(first[kept], layer.weight[kept] / 0.5)  # the kept ones scaled by 1 / (1 - p)
    x = torch.randn(8, 50)
    layer.eval()
    assert torch.equal(layer(x), layer(x)) and torch.equal(layer(x), linear(x))  # mean-field: the full weights


def test_dropconnect_rate_of_zero_is_a_plain_linear_layer_in_training() -> None:
    layer = DropConnectLinear(6, 4, p=0.0).train()
    x = torch.randn(3, 6)
    torch.testing.assert_close(layer(x), nn.functional.linear(x, layer.weight, layer.bias), atol=0, rtol=0)


@pytest.mark.parametrize(
    ("name", "layers"),
    [
        ("lenet5", ["features.f6"]),
        ("lenet5_paper", ["features.f6"]),
        ("alexnet", ["classifier.fc6", "classifier.fc7"]),
        ("alexnet_tv", ["classifier.fc6", "classifier.fc7"]),
        ("zfnet", ["classifier.fc6", "classifier.fc7"]),
        ("vgg16", ["classifier.fc6", "classifier.fc7"]),
    ],
)
def test_dropconnect_goes_to_the_hidden_fully_connected_layers_only(name: str, layers: list[str]) -> None:
    model = build_on_meta(name, dropconnect=0.3)
    dropping = [key for key, module in model.named_modules() if isinstance(module, DropConnectLinear) and module.p]
    assert dropping == layers
    assert type(model.get_classifier()) is not DropConnectLinear
    assert model.state_dict().keys() == build_on_meta(name).state_dict().keys()


def test_dropconnect_in_lenet5_varies_training_outputs_only() -> None:
    torch.manual_seed(0)
    model = create_model("lenet5", dropconnect=0.5)
    x = torch.randn(4, 1, 32, 32)
    assert not torch.equal(model.train()(x), model(x))
    assert torch.equal(model.eval()(x), model(x))


def test_dropconnect_alexnet_tv_loads_torchvision_weights_and_matches_it_at_eval() -> None:
    torch.manual_seed(0)
    theirs = torchvision.models.alexnet(weights=None).eval()
    ours = load_torchvision_weights(create_model("alexnet_tv", dropconnect=0.5), theirs.state_dict())
    assert_same_outputs(ours, theirs, torch.randn(1, 3, 224, 224))


def test_bad_dropconnect_names_the_accepted_range() -> None:
    with pytest.raises(ValueError, match=r"dropconnect must be in \[0, 1\), got 1.0"):
        build_on_meta("vgg11", dropconnect=1.0)
    with pytest.raises(TypeError, match="resnet20 takes no argument 'dropconnect'"):
        build_on_meta("resnet20", dropconnect=0.5)


# config groups and the train entry point


@pytest.mark.parametrize(("group", "options"), [("activation", ACTIVATIONS), ("norm", NORMS)])
def test_config_group_has_one_file_per_option(group: str, options: tuple[str, ...]) -> None:
    paths = sorted((CONFIG_DIR / group).glob("*.yaml"))
    assert sorted(path.stem for path in paths) == sorted(options)
    for path in paths:
        assert path.read_text().startswith("# @package model\n")
        assert OmegaConf.load(path) == {group: path.stem}


@pytest.mark.parametrize(
    ("overrides", "activation", "norm"),
    [
        (["model=resnet20", "activation=elu", "norm=group"], nn.ELU, "group"),
        (
            ["model=lenet5", "data.in_channels=1", "activation=maxout", "norm=batch", "model.dropconnect=0.5"],
            ChannelMaxout,
            "batch",
        ),
        (
            ["model=squeezenet1_1", "data.image_size=17", "activation=prelu", "norm=batch", "init=sparse"],
            nn.PReLU,
            "batch",
        ),
    ],
)
def test_switches_compose_and_train(train_config, overrides: list[str], activation: type, norm: str) -> None:
    cfg = train_config(*overrides, *FAST_DATA)
    assert cfg.model.norm == norm
    net = build(cfg)[1].net
    assert modules_of(net, activation) and not modules_of(net, nn.ReLU) and not modules_of(net, nn.Tanh)
    assert set(norm_kinds(net)) == {norm}
    assert all(
        layer.p == cfg.model.get("dropconnect") for layer in net.modules() if isinstance(layer, DropConnectLinear)
    )
    summary = train(cfg)
    assert torch.isfinite(torch.tensor(summary["test/loss"]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=lenet5", "norm=group"], "model: norm='group' is not available for LeNet5; accepted: none, batch"),
        (["model=densenet_bc_100", "norm=local_response"], "model: norm='local_response' is not available for "),
        (
            ["model=lenet5_paper", "activation=relu"],
            "model.activation: not an argument of models.lenet.lenet5_paper; accepted: num_classes, in_channels, ",
        ),
    ],
)
def test_refused_switch_is_a_one_line_user_error(train_config, overrides: list[str], message: str) -> None:
    cfg = train_config(*overrides, *FAST_DATA)
    with pytest.raises(UserError) as error:
        train(cfg)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_unknown_switch_names_the_options() -> None:
    with pytest.raises(UserError, match="unknown norm 'grop'; did you mean group\\? accepted: batch, group, layer"):
        check_overrides(["norm=grop"])
    with pytest.raises(UserError, match="unknown init 'he'; accepted: kaiming_normal, kaiming_uniform, lecun_normal"):
        check_overrides(["init=he"])
    check_overrides(["model=resnet20", "init=normal", "model.init_std=0.1", "activation=selu", "norm=layer"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["activation=foo"],
            "error: unknown activation 'foo'; accepted: elu, leaky_relu, maxout, prelu, relu, relu6, rrelu, ",
        ),
        (["model=resnet20", "norm=none"], "error: model: norm='none' is not available for CifarResNet; accepted: "),
    ],
)
def test_train_script_reports_a_bad_switch_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_script("train.py", *args, "data=fake", "trainer.accelerator=cpu", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith(message)
    assert "Traceback" not in result.stderr
