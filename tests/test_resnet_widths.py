"""ResNeXt and wide ResNet on ImageNet: ResNet's bottleneck with a grouped or widened 3x3 conv (``groups``,
``width_per_group`` of ``models.resnet.ResNet``), checked against torchvision's networks of the same names."""

import inspect

import pytest
import torch
import torchvision
from omegaconf import OmegaConf

from conftest import CONFIG_DIR, build_on_meta, check_torchvision_round_trip, count_parameters
from models import TORCHVISION_NAMES, create_model, get_model_builder
from models.resnet import BasicBlock, Bottleneck, ResNet
from models.summary import summarize

# torchvision's exact counts for 1000 classes (its weights' num_params metadata) and its "GFLOPS" metadata (_ops),
# which counts multiply-adds at 224x224; (groups, width_per_group) of each name
NETWORKS = {
    "resnext50_32x4d": (25_028_904, 4.230, (32, 4)),
    "resnext101_32x8d": (88_791_336, 16.414, (32, 8)),
    "resnext101_64x4d": (83_455_272, 15.460, (64, 4)),
    "wide_resnet50_2": (68_883_240, 11.398, (1, 128)),
    "wide_resnet101_2": (126_886_696, 22.753, (1, 128)),
}
NAMES = list(NETWORKS)


@pytest.mark.parametrize("name", NAMES)
def test_parameters_and_multiply_adds_equal_torchvisions(name: str) -> None:
    parameters, gmacs, _ = NETWORKS[name]
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    assert (parameters, gmacs) == (meta["num_params"], meta["_ops"])
    summary = summarize(build_on_meta(name), (3, 224, 224))
    assert summary.parameters == parameters
    assert summary.macs / 1e9 == pytest.approx(gmacs, abs=0.0005)


def test_resnext50_differs_from_resnet50_by_its_bottleneck_widths() -> None:
    """Xie et al. Table 1 by hand: a block of ``planes`` p has inner width 2p (32 x 4 = 128 for p = 64) where ResNet-50
    has p, and its 3x3 conv 32 groups: the 1x1 convs and the BN grow, the 3x3 conv shrinks to 1/8."""

    def block(in_channels: int, inner: int, out: int, groups: int) -> int:
        convs = in_channels * inner + 9 * inner * inner // groups + inner * out
        return convs + 2 * (2 * inner + out)  # three batch norms: scale and shift

    stages = [(64, 3), (128, 4), (256, 6), (512, 3)]  # Table 1's planes and depths (3, 4, 6, 3)
    difference = 0
    in_channels = 64
    for planes, depth in stages:
        for _ in range(depth):  # the projections (first block of each stage) are the same in both
            difference += block(in_channels, 2 * planes, 4 * planes, 32) - block(in_channels, planes, 4 * planes, 1)
            in_channels = 4 * planes
    assert 25_557_032 + difference == NETWORKS["resnext50_32x4d"][0]  # resnet50's 25,557,032 parameters


@pytest.mark.parametrize("name", NAMES)
def test_layers_follow_table_1(name: str) -> None:
    """The grouped 3x3 conv of a block of ``planes`` is ``planes * width_per_group / 64 * groups`` wide, split into
    ``groups`` groups, and a block puts out 4 x planes channels, as ResNet-50's."""
    groups, width_per_group = NETWORKS[name][2]
    model = build_on_meta(name)  # the stages' output sizes: tests/test_model_families.py
    stages = (model.layer1, model.layer2, model.layer3, model.layer4)
    for stage, planes in zip(stages, (64, 128, 256, 512), strict=True):
        inner = planes * width_per_group // 64 * groups
        for block in stage:
            assert (block.conv1.out_channels, block.conv2.in_channels, block.conv2.out_channels) == (inner,) * 3
            assert (block.conv2.groups, block.conv3.out_channels) == (groups, 4 * planes)
    assert model.layer2[0].conv2.stride == (2, 2)  # Sec. 5.1: stage downsampling in the first block's 3x3 conv


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) if "101" in name else name for name in NAMES]
)
def test_torchvision_weights_give_equal_outputs(name: str) -> None:
    assert TORCHVISION_NAMES[name] == name
    check_torchvision_round_trip(name, 32)


@pytest.mark.parametrize("name", NAMES)
def test_builders_take_resnet50s_arguments_and_the_config_lists_them(name: str) -> None:
    """The widths are fixed by the name: the builders take exactly resnet50's arguments, and the config lists each
    with the builder's default."""
    parameters = inspect.signature(get_model_builder(name)).parameters
    assert list(parameters) == list(inspect.signature(get_model_builder("resnet50")).parameters)
    assert "groups" not in parameters and "width_per_group" not in parameters
    config = OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml")
    assert config.name == name and config.pretrained is None
    assert set(config) == {"_target_", "name", "pretrained", *parameters}
    defaults = {key: p.default for key, p in parameters.items() if key not in ("num_classes", "in_channels")}
    assert {key: config[key] for key in defaults} == defaults


def test_resnet_keeps_its_widths_and_keys() -> None:
    """groups=1, width_per_group=64 is ResNet-50 itself: the same parameters under the same names."""
    with torch.device("meta"):
        plain, explicit = create_model("resnet50"), ResNet(Bottleneck, (3, 4, 6, 3), groups=1, width_per_group=64)
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in explicit.state_dict().items()}
    assert count_parameters(plain) == 25_557_032


def test_bad_widths_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="groups and width_per_group apply to bottleneck blocks only"):
        ResNet(BasicBlock, (2, 2, 2, 2), groups=32)
    with pytest.raises(ValueError, match="groups must be a positive integer, got 0"):
        ResNet(Bottleneck, (3, 4, 6, 3), groups=0)
    with pytest.raises(ValueError, match=r"width_per_group must be a positive integer, got 4\.5"):
        ResNet(Bottleneck, (3, 4, 6, 3), width_per_group=4.5)
    with pytest.raises(TypeError, match="resnext50_32x4d takes no argument 'groups'"):
        create_model("resnext50_32x4d", groups=64)
    with pytest.raises(TypeError, match="resnet50 takes no argument 'width_per_group'"):
        create_model("resnet50", width_per_group=128)
