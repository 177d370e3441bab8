"""Xception (Chollet 2017): the parameter count worked out from Figure 5 (Table 3's 22,855,952), the multiply-adds at
299x299, timm's ``legacy_xception`` weights giving timm's outputs, the blocks' structure and the options."""

import inspect
import math
from pathlib import Path

import pytest
import timm  # the dev extra's: the reference implementation
import torch
from torch import nn

from conftest import assert_same_outputs, build_on_meta, check_model_config, count_parameters
from models import create_model, get_model_builder, load_pretrained
from models.summary import summarize
from models.xception import Xception, XceptionBlock


def separable(c_in: int, c_out: int) -> int:
    """A SepConv's weights: a 3x3 filter per input channel, then the 1x1 convolution; no bias."""
    return 9 * c_in + c_in * c_out


# Figure 5 by hand for 1000 classes; every conv and SepConv is followed by a batch norm (2 parameters a channel)
XCEPTION = sum(
    [
        # entry flow, conv1 3x3 3 -> 32 and conv2 3x3 32 -> 64, with their BNs: 864 + 64 + 18,432 + 128
        3 * 32 * 9 + 2 * 32 + 32 * 64 * 9 + 2 * 64,
        # block1: SepConv 64 -> 128, SepConv 128 -> 128, shortcut 1x1 64 -> 128: 35,264
        separable(64, 128) + 2 * 128 + separable(128, 128) + 2 * 128 + 64 * 128 + 2 * 128,
        # block2: SepConv 128 -> 256, 256 -> 256, shortcut 128 -> 256: 136,064
        separable(128, 256) + 2 * 256 + separable(256, 256) + 2 * 256 + 128 * 256 + 2 * 256,
        # block3: SepConv 256 -> 728, 728 -> 728, shortcut 256 -> 728: 915,944
        separable(256, 728) + 2 * 728 + separable(728, 728) + 2 * 728 + 256 * 728 + 2 * 728,
        # middle flow: 8 blocks of 3 SepConvs 728 -> 728, identity shortcuts: 8 x 1,613,976
        8 * 3 * (separable(728, 728) + 2 * 728),
        # exit flow block: SepConv 728 -> 728, 728 -> 1024, shortcut 728 -> 1024: 2,039,584
        separable(728, 728) + 2 * 728 + separable(728, 1024) + 2 * 1024 + 728 * 1024 + 2 * 1024,
        # conv3 SepConv 1024 -> 1536 and conv4 SepConv 1536 -> 2048, with their BNs: 1,585,152 + 3,163,648
        separable(1024, 1536) + 2 * 1536 + separable(1536, 2048) + 2 * 2048,
        # the logistic regression layer 2048 -> 1000: 2,049,000
        2048 * 1000 + 1000,
    ]
)


def multiply_adds_by_hand() -> int:
    """Figure 5's multiply-adds for a 299x299 image: each conv's output positions x its weights (a SepConv's
    depthwise part 9 per channel, its pointwise part c_in x c_out), and the classifier. Sizes: conv1 149, conv2 147,
    the entry blocks' SepConvs at 147, 74 and 37 with their pools and shortcuts to 74, 37 and 19, the middle flow at
    19, the exit block at 19 to 10, conv3 and conv4 at 10."""
    total = 149**2 * 3 * 32 * 9 + 147**2 * 32 * 64 * 9
    for size, pooled, c_in, widths in [(147, 74, 64, (128, 128)), (74, 37, 128, (256, 256)), (37, 19, 256, (728, 728))]:
        channels = c_in
        for width in widths:
            total += size**2 * separable(channels, width)
            channels = width
        total += pooled**2 * c_in * channels  # the 1x1 stride-2 shortcut
    total += 8 * 3 * 19**2 * separable(728, 728)
    total += 19**2 * (separable(728, 728) + separable(728, 1024)) + 10**2 * 728 * 1024
    total += 10**2 * (separable(1024, 1536) + separable(1536, 2048))
    return total + 2048 * 1000


def test_parameter_count_is_table_3s_worked_out_from_figure_5() -> None:
    assert XCEPTION == 22_855_952  # Table 3
    assert count_parameters(build_on_meta("xception")) == XCEPTION
    assert f"{XCEPTION:,} parameters" in inspect.getdoc(get_model_builder("xception"))
    assert count_parameters(build_on_meta("xception", num_classes=10)) == XCEPTION - 2048 * 990 - 990


def test_multiply_adds_at_299_by_hand() -> None:
    # the paper prints no figure: ours, 8.357 G, is docs/models.md's
    summary = summarize(build_on_meta("xception"), (3, 299, 299))
    assert summary.macs == multiply_adds_by_hand() == 8_357_403_496


@pytest.fixture(scope="module")
def timm_xception() -> nn.Module:
    """timm's ``legacy_xception``, randomly initialised, with random batch-norm statistics and affine parameters so
    that every norm's place matters when comparing outputs."""
    torch.manual_seed(0)
    model = timm.create_model("legacy_xception", pretrained=False)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
    return model


def test_timms_weights_load_from_a_file_and_give_timms_outputs(timm_xception: nn.Module, tmp_path: Path) -> None:
    torch.save(timm_xception.state_dict(), tmp_path / "legacy_xception.pth")
    ours = create_model("xception", pretrained=tmp_path / "legacy_xception.pth")
    assert_same_outputs(ours, timm_xception, torch.randn(2, 3, 35, 35))  # global pooling: small images run it all


def test_timms_state_dict_renamed_key_by_key(timm_xception: nn.Module) -> None:
    theirs = timm_xception.state_dict()
    renamed = Xception.convert_timm_state_dict(theirs)
    assert renamed["entry_flow.block1.branch.sep1.depthwise.weight"] is theirs["block1.rep.0.conv1.weight"]
    assert renamed["entry_flow.block2.branch.bn2.running_var"] is theirs["block2.rep.5.running_var"]
    assert renamed["middle_flow.block8.branch.sep3.pointwise.weight"] is theirs["block11.rep.7.pointwise.weight"]
    assert renamed["exit_flow.block.shortcut.norm.bias"] is theirs["block12.skipbn.bias"]
    assert renamed["exit_flow.conv4.depthwise.weight"] is theirs["conv4.conv1.weight"]
    assert set(renamed) == set(build_on_meta("xception").state_dict())
    unknown = {"head.weight": theirs["fc.weight"]}
    assert Xception.convert_timm_state_dict(unknown) == unknown  # left for the loader to report
    # timm's weights for 1000 classes into a 10-class model: the classifier replaced, the rest loaded
    model = load_pretrained(create_model("xception", num_classes=10), theirs, "xception", reset_classifier=True)
    torch.testing.assert_close(model.exit_flow.bn4.running_mean, theirs["bn4.running_mean"])
    assert model.fc.out_features == 10


def children(module: nn.Module) -> list[str]:
    return [name for name, _ in module.named_children()]


def test_blocks_follow_figure_5() -> None:
    model = build_on_meta("xception")
    blocks = [*(getattr(model.entry_flow, f"block{i}") for i in (1, 2, 3)), *model.middle_flow, model.exit_flow.block]
    assert len(model.middle_flow) == 8  # "repeated 8 times"
    assert [type(m) for m in blocks] == [XceptionBlock] * 12
    # 36 convolutional layers: conv1, conv2, the blocks' 32 SepConvs and the SepConvs conv3, conv4 (Section 3)
    separables = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert 2 + len(separables) == 2 + 32 + 2 == 36  # the 1x1 shortcuts apart
    assert all(m.groups == m.in_channels == m.out_channels and m.kernel_size == (3, 3) for m in separables)
    assert children(blocks[0].branch) == ["sep1", "bn1", "act2", "sep2", "bn2", "pool"]  # after conv2's ReLU
    assert children(blocks[1].branch) == ["act1", "sep1", "bn1", "act2", "sep2", "bn2", "pool"]
    assert children(blocks[3].branch) == ["act1", "sep1", "bn1", "act2", "sep2", "bn2", "act3", "sep3", "bn3"]
    assert not blocks[1].branch.act1.inplace and blocks[1].branch.act2.inplace  # the shortcut reads the input
    for block, (c_in, c_out) in zip(
        [*blocks[:3], blocks[-1]], [(64, 128), (128, 256), (256, 728), (728, 1024)], strict=True
    ):
        conv = block.shortcut.conv
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (c_in, c_out, (1, 1), (2, 2))
        assert (block.branch.pool.kernel_size, block.branch.pool.stride) == (3, 2)
    assert all(block.shortcut is None and not hasattr(block.branch, "pool") for block in model.middle_flow)


def test_block_adds_the_branch_to_its_input() -> None:
    torch.manual_seed(0)
    block = XceptionBlock(8, (8, 8, 8), 1, "relu", "batch").eval()
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(x), block.branch(x) + x)


def test_forward_backward_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = create_model("xception", num_classes=4)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 4)
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_smallest_input_is_7_pixels() -> None:
    model = create_model("xception", num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 7, 7)).shape == (1, 3)
    with pytest.raises(ValueError, match=r"^Xception needs images of at least 7x7 pixels \(its paper used 299x299\)"):
        model(torch.randn(1, 3, 6, 6))


def test_switches_reach_every_place() -> None:
    model = build_on_meta("xception", activation="prelu", norm="group")
    activations = [m for m in model.modules() if isinstance(m, nn.PReLU)]
    # conv1, conv2; 1 + 2 + 2 in the entry blocks, 8 x 3 in the middle flow, 2 in the exit block, conv3, conv4
    assert len(activations) == 2 + 5 + 24 + 2 + 2 == 35
    assert not any(isinstance(m, nn.ReLU | nn.BatchNorm2d) for m in model.modules())
    # a norm after each of the 36 convolutional layers and the 4 projections
    assert sum(isinstance(m, nn.GroupNorm) for m in model.modules()) == 40
    with pytest.raises(ValueError, match=r"^norm='none' is not available for Xception; accepted: batch, group, layer"):
        build_on_meta("xception", norm="none")
    with pytest.raises(ValueError, match=r"^dropout must be in \[0, 1\), got 1.0$"):
        build_on_meta("xception", dropout=1.0)


def test_dropout_before_the_classifier_in_training_only() -> None:
    torch.manual_seed(0)
    model = create_model("xception", num_classes=5)
    assert model.drop.p == 0.5  # Section 4.3
    features = torch.randn(4, 2048, 2, 2)
    with torch.no_grad():
        assert torch.equal(model.eval().forward_head(features), model.fc(features.mean((2, 3))))
        assert not torch.equal(model.train().forward_head(features), model.forward_head(features))


def test_paper_init_is_keras_glorot_uniform() -> None:
    torch.manual_seed(0)
    model = create_model("xception")
    for layer in (model.middle_flow.block1.branch.sep1.pointwise, model.fc):
        fan_in, fan_out = layer.weight[0].numel(), layer.weight.shape[0] * layer.weight[0, 0].numel()
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert layer.weight.abs().max().item() == pytest.approx(bound, rel=0.01)
    assert (model.fc.bias == 0).all()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all((bn.weight == 1).all() and (bn.bias == 0).all() for bn in norms)


def test_classifier_interface() -> None:
    model = build_on_meta("xception", in_channels=1)
    assert model.forward_features(torch.empty(2, 1, 299, 299, device="meta")).shape == (2, 2048, 10, 10)
    assert model.get_classifier() is model.fc
    model.reset_classifier(5)
    assert model(torch.empty(2, 1, 299, 299, device="meta")).shape == (2, 5) and model.num_classes == 5


def test_config_lists_every_option_with_its_default() -> None:
    check_model_config("xception")
