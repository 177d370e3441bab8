"""Wide ResNet (Zagoruyko & Komodakis 2016): the parameter counts worked out from Table 1, the paper's rounded figures,
the output size of each group, the projection shortcuts, dropout between the convolutions, and the options."""

import inspect
import math

import pytest
import torch
from torch import nn

from conftest import build_on_meta, check_model_config, count_parameters
from models import create_model, get_model_builder
from models.summary import summarize
from models.wide_resnet import WideBasicBlock, WideResNet

# (depth, widen factor, the paper's figure in millions: Tables 4 and 5)
NETWORKS = {"wrn_28_10": (28, 10, 36.5), "wrn_16_8": (16, 8, 11.0), "wrn_40_4": (40, 4, 8.9)}

# WRN-16-8 by hand: N = (16 - 4) / 6 = 2 blocks a group of 16k = 128, 32k = 256, 64k = 512 channels; convs without
# bias, a batch norm has 2 parameters a channel, the classifier 512 x 10 + 10.
WRN_16_8 = sum(
    [
        # conv1: 3x3, 3 -> 16: 432
        3 * 16 * 9,
        # conv2, block 1: BN(16), 3x3 16 -> 128, BN(128), 3x3 128 -> 128, projection 1x1 16 -> 128: 168,224
        2 * 16 + 16 * 128 * 9 + 2 * 128 + 128 * 128 * 9 + 16 * 128,
        # conv2, block 2: BN(128), 3x3 128 -> 128, BN(128), 3x3 128 -> 128: 295,424
        2 * (2 * 128 + 128 * 128 * 9),
        # conv3, block 1: BN(128), 3x3 128 -> 256 stride 2, BN(256), 3x3 256 -> 256, projection 128 -> 256: 918,272
        2 * 128 + 128 * 256 * 9 + 2 * 256 + 256 * 256 * 9 + 128 * 256,
        # conv3, block 2: 1,180,672
        2 * (2 * 256 + 256 * 256 * 9),
        # conv4, block 1: BN(256), 3x3 256 -> 512 stride 2, BN(512), 3x3 512 -> 512, projection 256 -> 512: 3,671,552
        2 * 256 + 256 * 512 * 9 + 2 * 512 + 512 * 512 * 9 + 256 * 512,
        # conv4, block 2: 4,720,640
        2 * (2 * 512 + 512 * 512 * 9),
        # the final BN(512), then the classifier 512 -> 10: 6,154
        2 * 512 + 512 * 10 + 10,
    ]
)


def counted_by_hand(depth: int, k: int, classes: int = 10) -> int:
    """Table 1's parameters for any WRN-d-k: the sum above with N blocks a group and widths 16k, 32k, 64k."""
    n = (depth - 4) // 6
    total, channels = 3 * 16 * 9, 16
    for width, stride in ((16 * k, 1), (32 * k, 2), (64 * k, 2)):
        projection = 0 if (channels, stride) == (width, 1) else channels * width  # k = 1: conv2 keeps 16 channels
        first = 2 * channels + channels * width * 9 + 2 * width + width * width * 9 + projection
        total += first + (n - 1) * 2 * (2 * width + width * width * 9)
        channels = width
    return total + 2 * channels + channels * classes + classes


def multiply_adds_by_hand(depth: int, k: int, classes: int = 10) -> int:
    """Table 1's multiply-adds for a 32x32 image: each conv's output positions x its weights, and the classifier
    (the paper prints none; batch norms, additions and the pool are not counted, as in torchvision's figures)."""
    n = (depth - 4) // 6
    total, channels = 32 * 32 * 16 * 3 * 9, 16  # conv1
    for width, size in ((16 * k, 32), (32 * k, 16), (64 * k, 8)):
        projection = 0 if channels == width else size * size * width * channels
        first = size * size * (width * channels * 9 + width * width * 9) + projection
        total += first + (n - 1) * 2 * size * size * width * width * 9
        channels = width
    return total + channels * classes


def test_wrn_16_8_count_by_hand() -> None:
    assert WRN_16_8 == counted_by_hand(16, 8) == 10_961_370
    assert count_parameters(build_on_meta("wrn_16_8")) == WRN_16_8


@pytest.mark.parametrize("name", NETWORKS)
def test_parameter_counts_are_table_1s_and_round_to_the_papers_figures(name: str) -> None:
    depth, k, millions = NETWORKS[name]
    count = count_parameters(build_on_meta(name))
    assert count == counted_by_hand(depth, k)
    assert f"{count:,} parameters" in inspect.getdoc(get_model_builder(name))  # the builder states it exactly
    assert round(count / 1e6, 1) == millions  # 36,479,194 / 10,961,370 / 8,949,210
    assert count_parameters(build_on_meta(name, num_classes=100)) == counted_by_hand(depth, k, 100)


def test_multiply_adds_of_wrn_16_8_by_hand() -> None:
    macs = summarize(create_model("wrn_16_8"), (3, 32, 32)).macs
    assert macs == multiply_adds_by_hand(16, 8) == 1_548_145_664  # docs/models.md: 1.548 G


@pytest.mark.parametrize(("depth", "k"), [(10, 1), (22, 2), (34, 3)])
def test_any_depth_and_width_builds_table_1(depth: int, k: int) -> None:
    with torch.device("meta"):
        model = WideResNet(depth, k)
    assert count_parameters(model) == counted_by_hand(depth, k)
    assert [len(model.layer1), len(model.layer2), len(model.layer3)] == [(depth - 4) // 6] * 3
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    projections = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    # the depth counts conv1, the 3x3 convs of the blocks and the projections (k = 1: conv2 keeps 16 channels)
    assert len(convs) + len(projections) == depth - (k == 1)


def test_forward_backward_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = WideResNet(10, 2, dropout=0.3, num_classes=4)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 4)
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_projection_shortcuts_where_the_width_or_the_stride_changes() -> None:
    model = build_on_meta("wrn_16_8")
    for group, (in_channels, width, stride) in zip(
        (model.layer1, model.layer2, model.layer3), [(16, 128, 1), (128, 256, 2), (256, 512, 2)], strict=True
    ):
        projection = group[0].shortcut
        assert (projection.in_channels, projection.out_channels) == (in_channels, width)
        assert (projection.kernel_size, projection.stride, projection.bias) == ((1, 1), (stride, stride), None)
        assert group[0].conv1.stride == (stride, stride)
        assert group[1].shortcut is None  # the identity
    assert build_on_meta("wrn_16_8", norm="group").layer1[0].shortcut is not None
    with torch.device("meta"):
        assert WideResNet(10, 1).layer1[0].shortcut is None  # k = 1: 16 -> 16 channels at stride 1


def test_block_is_pre_activation_with_dropout_after_the_second_relu() -> None:
    block = WideBasicBlock(8, 16, 2, 0.3, "relu", "batch")
    order = []
    for name, module in block.named_children():
        module.register_forward_hook(lambda module, args, out, name=name: order.append(name))
    block(torch.randn(2, 8, 6, 6))
    assert order == ["bn1", "act1", "conv1", "bn2", "act2", "drop", "conv2", "shortcut"]


def test_block_adds_the_branch_to_the_input_without_an_activation_after() -> None:
    torch.manual_seed(0)
    block = WideBasicBlock(4, 4, 1, 0.0, "relu", "batch").eval()
    x = torch.randn(2, 4, 5, 5)
    branch = block.conv2(block.act2(block.bn2(block.conv1(block.act1(block.bn1(x))))))
    out = block(x)
    torch.testing.assert_close(out, branch + x)
    assert (out < 0).any()  # no ReLU after the sum


def test_dropout_acts_in_training_mode_only() -> None:
    torch.manual_seed(0)
    model = WideResNet(10, 1, dropout=0.3)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 3 and all(m.p == 0.3 for m in drops)  # one a block
    x = torch.randn(4, 3, 32, 32)
    without = WideResNet(10, 1)
    without.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), without.eval()(x), atol=0, rtol=0)  # eval: no dropout
        assert torch.equal(model(x), model(x))
        assert not torch.equal(model.train()(x), model(x))  # a new mask each pass
        assert torch.equal(without.train()(x), without(x))  # dropout=0 drops nothing, in training too


@pytest.mark.parametrize("depth", [9, 12, 27, 4, 28.0])
def test_depth_must_be_6n_plus_4(depth: object) -> None:
    with pytest.raises(ValueError, match=r"^depth must be 6N \+ 4 with N >= 1 \(10, 16, 22, 28, 34, 40, \.\.\.\), got"):
        WideResNet(depth, 1)


def test_bad_options_name_the_accepted_values() -> None:
    with pytest.raises(ValueError, match=r"^widen_factor must be a positive integer, got 0$"):
        WideResNet(10, 0)
    with pytest.raises(ValueError, match=r"^dropout must be in \[0, 1\), got 1.0$"):
        create_model("wrn_16_8", dropout=1.0)
    with pytest.raises(ValueError, match=r"^norm='none' is not available for WideResNet; accepted: batch, group"):
        build_on_meta("wrn_28_10", norm="none")
    with pytest.raises(TypeError, match="wrn_16_8 takes no argument 'depth'"):
        create_model("wrn_16_8", depth=22)


def test_paper_init_is_he_normal_with_fan_out() -> None:
    torch.manual_seed(0)
    model = create_model("wrn_16_8")
    conv = model.layer3[1].conv2  # 512 x 512 x 3 x 3 weights
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (conv.out_channels * 9)), rel=0.02)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 2 * 6 + 1 and all((bn.weight == 1).all() and (bn.bias == 0).all() for bn in norms)
    assert (model.fc.bias == 0).all()


def test_classifier_interface() -> None:
    model = WideResNet(10, 2, in_channels=1)
    x = torch.randn(2, 1, 32, 32)
    assert model.forward_features(x).shape == (2, 128, 8, 8)
    assert model.get_classifier() is model.fc
    model.reset_classifier(5)
    assert model(x).shape == (2, 5) and model.num_classes == 5
    assert model(torch.randn(2, 1, 1, 1)).shape == (2, 5)  # padded convs: any size down to 1x1


@pytest.mark.parametrize("name", NETWORKS)
def test_config_lists_every_option_with_its_default_and_10_classes(name: str) -> None:
    check_model_config(name)
    assert inspect.signature(get_model_builder(name)).parameters["num_classes"].default == 10
