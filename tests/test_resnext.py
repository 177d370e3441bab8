import inspect

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from conftest import CONFIG_DIR, build_on_meta, count_parameters, record_output_shapes
from models import INIT_SCHEMES, get_model_builder
from models.resnet import Bottleneck
from models.resnext import ResNeXtCifar
from models.summary import summarize

# Exact parameter counts for 10 classes, and Table 7's (Xie et al. 2017) printed figures in millions
PARAMETERS = {"resnext29_8x64d": 34_426_698, "resnext29_16x64d": 68_155_210}
PAPER_MILLIONS = {"resnext29_8x64d": 34.4, "resnext29_16x64d": 68.1}
CARDINALITY = {"resnext29_8x64d": 8, "resnext29_16x64d": 16}
SMALL = (11, 4, 4)  # ResNeXt-11, 4x4d: one block a stage, for the tests that run a network on a CPU


def count_from_table_7(cardinality: int, d: int = 64, classes: int = 10, norm_parameters: bool = True) -> int:
    """ResNeXt-29 (C x d) counted from Sec. 5.3's table: conv1 3x3x3x64; 3 stages of 3 blocks with output widths 256,
    512, 1024 and C paths of d, 2d, 4d channels; a projection (1x1 conv + BN) in each stage's first block; fc.
    Each conv is followed by a batch norm with a scale and a shift per channel."""
    bn = 2 if norm_parameters else 0
    total = 3 * 3 * 3 * 64 + bn * 64 + 1024 * classes + classes
    in_channels = 64
    for stage, out in enumerate((256, 512, 1024)):
        width = cardinality * d * 2**stage  # C paths of d * 2^stage channels side by side
        group = d * 2**stage
        for block in range(3):
            block_in = in_channels if block == 0 else out
            total += block_in * width + bn * width  # 1x1, C*d
            total += width * group * 3 * 3 + bn * width  # 3x3 in C groups: each output sees its group's d inputs
            total += width * out + bn * out  # 1x1, out
            if block == 0:
                total += block_in * out + bn * out  # the projection
        in_channels = out
    return total


@pytest.mark.parametrize("name", list(PARAMETERS))
def test_parameter_counts_are_table_7s_architecture(name: str) -> None:
    assert count_parameters(build_on_meta(name)) == PARAMETERS[name] == count_from_table_7(CARDINALITY[name])


def test_parameters_of_one_block() -> None:
    # 8x64d, stage 1, second block (256 in, 256 out, C*d = 512, identity shortcut):
    # 1x1 256x512 = 131,072 + BN 1,024; 3x3 in 8 groups 512 x 64 x 9 = 294,912 + BN 1,024;
    # 1x1 512x256 = 131,072 + BN 512
    block = build_on_meta("resnext29_8x64d").stages.stage1[1]
    assert count_parameters(block) == 131_072 + 1_024 + 294_912 + 1_024 + 131_072 + 512 == 559_616
    # The first block adds the projection 1x1 64x256 = 16,384 + BN 512, and its 1x1 takes 64 inputs: 64x512 = 32,768
    first = build_on_meta("resnext29_8x64d").stages.stage1[0]
    assert count_parameters(first) == 32_768 + 1_024 + 294_912 + 1_024 + 131_072 + 512 + 16_384 + 512


@pytest.mark.parametrize("name", list(PARAMETERS))
def test_paper_figures_of_table_7(name: str) -> None:
    # Table 7 prints 34.4M and 68.1M. Our counts are 34.43M and 68.16M (68.2M rounded); without batch norm's scales
    # and shifts (57,472 and 100,480) 34.37M and 68.05M, which round to both printed figures.
    model = build_on_meta(name)
    norm_parameters = sum(
        count_parameters(m) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d | torch.nn.GroupNorm)
    )
    weights = PARAMETERS[name] - norm_parameters
    assert weights == count_from_table_7(CARDINALITY[name], norm_parameters=False)
    assert round(weights / 1e6, 1) == PAPER_MILLIONS[name]
    assert PARAMETERS[name] / 1e6 == pytest.approx(PAPER_MILLIONS[name], abs=0.06)


@pytest.mark.parametrize("name", list(PARAMETERS))
def test_stages_follow_section_5_3(name: str) -> None:
    model = build_on_meta(name)  # the stages' output sizes: tests/test_model_families.py
    assert [len(stage) for stage in model.stages] == [3, 3, 3]  # 29 = 3 x 3 x 3 + 2


@pytest.mark.parametrize("name", list(PARAMETERS))
def test_the_3x3_convs_are_grouped_by_the_cardinality(name: str) -> None:
    cardinality = CARDINALITY[name]
    model = build_on_meta(name)
    for index, stage in enumerate(model.stages):
        d = 64 * 2**index  # Sec. 3.1: the paths' width doubles where the maps are halved
        for position, block in enumerate(stage):
            conv = block.conv2
            assert conv.groups == cardinality
            assert conv.weight.shape == (cardinality * d, d, 3, 3)  # each of the C*d outputs sees d inputs
            assert conv.stride == ((2, 2) if position == 0 and index > 0 else (1, 1))  # the 3x3 downsamples
            assert block.conv1.groups == block.conv3.groups == 1
            projection = position == 0
            assert isinstance(block.downsample, torch.nn.Sequential) if projection else block.downsample is None


def test_multiply_adds_of_resnext29_8x64d() -> None:
    # Weights of each conv times the positions of its output map (32x32 = 1024, 16x16 = 256, 8x8 = 64).
    stage1 = (64 * 512 + 512 * 64 * 9 + 512 * 256 + 64 * 256 + 2 * (256 * 512 + 512 * 64 * 9 + 512 * 256)) * 1024
    # Stage 2 (C*d = 1024): the first block's 1x1 runs at 32x32, before its strided 3x3
    stage2 = 256 * 1024 * 1024 + (1024 * 128 * 9 + 1024 * 512 + 256 * 512) * 256
    stage2 += 2 * (512 * 1024 + 1024 * 128 * 9 + 1024 * 512) * 256
    stage3 = 512 * 2048 * 256 + (2048 * 256 * 9 + 2048 * 1024 + 512 * 1024) * 64
    stage3 += 2 * (1024 * 2048 + 2048 * 256 * 9 + 2048 * 1024) * 64
    conv1, fc = 3 * 9 * 64 * 1024, 1024 * 10
    summary = summarize(build_on_meta("resnext29_8x64d"), (3, 32, 32))
    assert summary.macs == conv1 + stage1 + stage2 + stage3 + fc == 5_387_266_048
    assert summary.parameters == PARAMETERS["resnext29_8x64d"]


def test_grouped_conv_is_the_sum_of_c_paths() -> None:
    # Eq. 3 / Figure 3(a): F(x) = sum_i T_i(x), each path T_i a 1x1 (d), 3x3 (d), 1x1 (out) stack of its own weights;
    # form (c) computes it with one 3x3 conv in C groups. Each path is built here from its slice of the weights.
    torch.manual_seed(0)
    cardinality, d = 4, 3
    block = Bottleneck(16, 4, groups=cardinality, width_per_group=16 * d).eval()  # 4 x 48 / 64 x 4 = C*d = 12 wide
    for bn in (block.bn1, block.bn2, block.bn3):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2)
        bn.bias.data.uniform_(-1, 1)
    r = block
    x = torch.randn(2, 16, 6, 6)

    def batch_norm(bn: torch.nn.BatchNorm2d, out: torch.Tensor, channels: slice) -> torch.Tensor:
        mean, var, weight, bias = (t[channels] for t in (bn.running_mean, bn.running_var, bn.weight, bn.bias))
        return F.batch_norm(out, mean, var, weight, bias, eps=bn.eps)

    paths = []
    for i in range(cardinality):
        channels = slice(i * d, (i + 1) * d)
        out = F.relu(batch_norm(r.bn1, F.conv2d(x, r.conv1.weight[channels]), channels))
        out = F.relu(batch_norm(r.bn2, F.conv2d(out, r.conv2.weight[channels], padding=1), channels))
        paths.append(F.conv2d(out, r.conv3.weight[:, channels]))
    aggregated = r.bn3(sum(paths))  # the batch norm of the last 1x1 follows the aggregation
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(x + aggregated))


def test_forward_backward_of_a_small_resnext() -> None:
    torch.manual_seed(0)
    model = ResNeXtCifar(*SMALL)
    shapes = record_output_shapes(model, ["stage1", "stage2", "stage3"])
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert shapes == {"stage1": (256, 32, 32), "stage2": (512, 16, 16), "stage3": (1024, 8, 8)}
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_classifier_interface_and_min_input_size() -> None:
    model = ResNeXtCifar(*SMALL, in_channels=1)
    x = torch.randn(2, 1, 1, 1)  # padded convs, strided 1x1 projections rounding up: a 1x1 image stays 1x1
    assert model.min_input_size == 1
    assert model.forward_features(x).shape == (2, 1024, 1, 1)
    assert model.get_classifier() is model.fc
    model.reset_classifier(5)
    assert model(x).shape == (2, 5)
    with pytest.raises(ValueError, match="needs images of at least 1x1 pixels"):
        model(torch.randn(2, 1, 0, 0))


def test_switches_replace_every_norm_and_activation() -> None:
    model = ResNeXtCifar(*SMALL, norm="group", activation="elu")
    assert not any(isinstance(m, torch.nn.BatchNorm2d | torch.nn.ReLU) for m in model.modules())
    assert isinstance(model.stages.stage2[0].downsample[1], torch.nn.GroupNorm)  # the projection's norm too
    assert isinstance(model.stages.stage2[0].act3, torch.nn.ELU)
    assert torch.isfinite(model(torch.randn(2, 3, 16, 16))).all()
    with pytest.raises(ValueError, match="norm='none' is not available for ResNeXtCifar; accepted: batch, group"):
        ResNeXtCifar(*SMALL, norm="none")


def test_paper_init_is_he_normal_with_fan_out() -> None:
    torch.manual_seed(0)
    conv = ResNeXtCifar(*SMALL).stages.stage3[0].conv2  # 1024 outputs in 4 groups of 256 inputs, 3x3
    assert conv.weight.std().item() == pytest.approx((2 / (conv.out_channels * 9)) ** 0.5, rel=0.02)


@pytest.mark.parametrize("init", INIT_SCHEMES)
def test_every_init_scheme_builds(init: str) -> None:
    model = ResNeXtCifar(11, 2, 2, init=init)
    assert torch.isfinite(model(torch.randn(2, 3, 8, 8))).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((30, 8, 64), "depth must be 9n \\+ 2"),
        ((2, 8, 64), "depth must be 9n \\+ 2"),
        ((29, 0, 64), "cardinality must be a positive integer, got 0"),
        ((29, 8, 0), "bottleneck_width must be a positive integer, got 0"),
    ],
)
def test_bad_architectures_are_refused(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResNeXtCifar(*args)


@pytest.mark.parametrize("name", list(PARAMETERS))
def test_config_lists_every_knob_with_its_default(name: str) -> None:
    config = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml"))  # unresolved
    defaults = {key: p.default for key, p in inspect.signature(get_model_builder(name)).parameters.items()}
    assert (config.pop("_target_"), config.pop("name"), config.pop("pretrained")) == ("models.create_model", name, None)
    assert config == {**defaults, "num_classes": "${data.num_classes}", "in_channels": "${data.in_channels}"}
    assert defaults["num_classes"] == 10
