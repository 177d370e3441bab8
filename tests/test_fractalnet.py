"""FractalNet (Larsson et al. 2017): the parameter count worked out by hand against the paper's figure, the expansion
rule of Eq. 1 and its column depths, the join, local and global drop-path and their 50/50 mix, dropout by block, the
paper's initialisation and the options."""

import inspect
import math
import os
import tempfile
from pathlib import Path

# hypothesis keeps its files in .hypothesis/ of the working directory, the repository, unless told otherwise
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "classicnets-hypothesis"))

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import build_on_meta, check_model_config, count_parameters
from models import create_model, get_model_builder
from models.fractalnet import FractalBlock, FractalNet, Join
from models.summary import summarize

# FractalNet-20 by hand (Section 4): 5 blocks of C = 3 columns of 1, 2 and 4 convolutions, 7 a block, the first of
# each column (3) reading the block's input and the other 4 the block's width; 3x3 kernels without bias, a batch norm
# (2 parameters a channel) after each, then the classifier 512 x 10 + 10.
FRACTALNET20 = sum(
    [
        # block 1, 3 -> 64: 3 * 3*64*9 + 4 * 64*64*9 + 7 * 2*64 = 5,184 + 147,456 + 896 = 153,536
        3 * 3 * 64 * 9 + 4 * 64 * 64 * 9 + 7 * 2 * 64,
        # block 2, 64 -> 128: 221,184 + 589,824 + 1,792 = 812,800
        3 * 64 * 128 * 9 + 4 * 128 * 128 * 9 + 7 * 2 * 128,
        # block 3, 128 -> 256: 884,736 + 2,359,296 + 3,584 = 3,247,616
        3 * 128 * 256 * 9 + 4 * 256 * 256 * 9 + 7 * 2 * 256,
        # block 4, 256 -> 512: 3,538,944 + 9,437,184 + 7,168 = 12,983,296
        3 * 256 * 512 * 9 + 4 * 512 * 512 * 9 + 7 * 2 * 512,
        # block 5, 512 -> 512: 7 * 512*512*9 + 7,168 = 16,522,240
        7 * 512 * 512 * 9 + 7 * 2 * 512,
        # classifier: 5,130
        512 * 10 + 10,
    ]
)
PAPER_MILLIONS = 38.6  # Table 1: "FractalNet (20 layers, 38.6M params)"


def counted_by_hand(channels: tuple[int, ...], columns: int, classes: int = 10, in_channels: int = 3) -> int:
    """Any FractalNet's parameters: per block, ``columns`` first convolutions from the block's input and
    2^columns - 1 - columns more at its width, each with a batch norm; then the classifier."""
    total = 0
    for width in channels:
        convs = 2**columns - 1
        total += columns * in_channels * width * 9 + (convs - columns) * width * width * 9 + convs * 2 * width
        in_channels = width
    return total + in_channels * classes + classes


def test_fractalnet20_count_by_hand_and_the_papers_figure() -> None:
    count = count_parameters(build_on_meta("fractalnet20"))
    assert count == FRACTALNET20 == counted_by_hand((64, 128, 256, 512, 512), 3) == 33_724_618
    assert f"{count:,} parameters" in inspect.getdoc(get_model_builder("fractalnet20"))
    # the paper prints 38.6M for the network its Eq. 1 and Section 4 describe, which has 33.7M (models/fractalnet.py)
    assert round(count / 1e6, 1) == 33.7 != PAPER_MILLIONS
    assert count_parameters(build_on_meta("fractalnet20", num_classes=100)) == counted_by_hand(
        (64, 128, 256, 512, 512), 3, 100
    )


@pytest.mark.parametrize(("channels", "columns"), [((8,), 1), ((4, 8), 2), ((8, 8, 16), 4)])
def test_any_channels_and_columns_are_counted_alike(channels: tuple[int, ...], columns: int) -> None:
    with torch.device("meta"):
        model = FractalNet(channels, columns, dropout=(0.0,) * len(channels))
    assert count_parameters(model) == counted_by_hand(channels, columns)


def test_multiply_adds_of_fractalnet20_by_hand() -> None:
    macs = summarize(create_model("fractalnet20"), (3, 32, 32)).macs
    # each block's convolutions at its map size (32, 16, 8, 4, 2) times their weights, and the classifier
    by_hand = (
        32 * 32 * (3 * 3 * 64 + 4 * 64 * 64) * 9
        + 16 * 16 * (3 * 64 * 128 + 4 * 128 * 128) * 9
        + 8 * 8 * (3 * 128 * 256 + 4 * 256 * 256) * 9
        + 4 * 4 * (3 * 256 * 512 + 4 * 512 * 512) * 9
        + 2 * 2 * 7 * 512 * 512 * 9
        + 512 * 10
    )
    assert macs == by_hand == 845_222_912  # docs/models.md: 0.845 G


def conv_units(block: FractalBlock) -> list[list[nn.Module]]:
    return [list(column) for column in block.columns]


@pytest.mark.parametrize("columns", [1, 2, 3, 4])
def test_expansion_rule_gives_columns_of_2_to_the_i_convolutions(columns: int) -> None:
    block = FractalBlock(columns, 2, 3, dropout=0.0, drop_path=0.0, activation="relu", norm="batch")
    depths = [len(column) for column in conv_units(block)]
    assert depths == [2**i for i in range(columns)]  # the deepest: 2^(C-1)
    # Eq. 1: f_{C+1} holds two copies of f_C and one conv, so 2^C - 1 convs in all, each run once at evaluation
    ran = []
    for module in block.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(lambda *_: ran.append(1))
    block.eval()(torch.randn(1, 2, 4, 4))
    assert len(ran) == sum(depths) == 2**columns - 1


def mean(*tensors: torch.Tensor) -> torch.Tensor:
    return sum(tensors) / len(tensors)


def test_block_computes_eq_1_with_flat_joins() -> None:
    torch.manual_seed(0)
    z = torch.randn(2, 3, 5, 5)
    f2 = FractalBlock(2, 3, 4, dropout=0.0, drop_path=0.15, activation="relu", norm="batch").eval()
    (conv,), deep = conv_units(f2)
    torch.testing.assert_close(f2(z), mean(deep[1](deep[0](z)), conv(z)))  # f_2(z) = join(conv(conv(z)), conv(z))
    f3 = FractalBlock(3, 3, 4, dropout=0.0, drop_path=0.15, activation="relu", norm="batch").eval()
    (conv,), middle, deep = conv_units(f3)
    inner = mean(deep[1](deep[0](z)), middle[0](z))  # the first f_2
    # f_3(z) = join(f_2(f_2(z)), conv(z)): the second f_2's last join and the outer one are a single join of 3
    torch.testing.assert_close(f3(z), mean(deep[3](deep[2](inner)), middle[1](inner), conv(z)))


def tiny(**options: object) -> FractalNet:
    """Two blocks of 3 columns on 4 channels: 4x4 images and up."""
    return FractalNet((4, 4), 3, **{"dropout": (0.0, 0.0), **options})


def test_evaluation_is_deterministic_and_ignores_drop_path() -> None:
    torch.manual_seed(0)
    model = tiny(dropout=(0.2, 0.3), drop_path=0.5, global_drop=0.5)
    plain = tiny(drop_path=0.0, global_drop=0.0)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        model.eval(), plain.eval()
        assert torch.equal(model(x), model(x))
        torch.testing.assert_close(model(x), plain(x), atol=0, rtol=0)  # every join averages all its inputs
        model.train()
        outputs = [model(x) for _ in range(4)]
    assert any(not torch.equal(outputs[0], other) for other in outputs[1:])  # training draws new paths


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(count=st.integers(2, 6), rate=st.floats(0.0, 0.999), seed=st.integers(0, 2**31 - 1))
def test_join_never_drops_every_input(count: int, rate: float, seed: int) -> None:
    torch.manual_seed(seed)
    join = Join(rate).train()
    out = join(list(torch.eye(count)))  # input i is the one-hot e_i: the output shows which inputs were averaged
    kept = out > 0
    assert kept.any()
    torch.testing.assert_close(out[kept], torch.full((int(kept.sum()),), 1 / int(kept.sum())))
    assert out[~kept].eq(0).all()
    torch.testing.assert_close(join.eval()(list(torch.eye(count))), torch.full((count,), 1 / count))


def test_local_drop_path_drops_each_input_at_its_rate() -> None:
    torch.manual_seed(0)
    join = Join(0.25).train()
    kept = torch.stack([join(list(torch.eye(4))) > 0 for _ in range(4000)]).float()
    # each input kept with probability 0.75; when all 4 are dropped (0.25^4) one is kept: 3 + 1/256 on average
    assert kept.sum(1).mean().item() == pytest.approx(3 + 1 / 256, abs=0.05)
    assert kept.mean(0).tolist() == pytest.approx([(3 + 1 / 256) / 4] * 4, abs=0.03)  # no input favoured


def columns_run(model: FractalNet, x: torch.Tensor) -> list[tuple[int, int]]:
    """(block, column) of every conv that ran in one forward pass of ``model``."""
    ran, handles = [], []
    for b, block in enumerate(model.blocks):
        for i, column in enumerate(block.columns):
            for unit in column:
                handles.append(unit.conv.register_forward_hook(lambda *_, b=b, i=i: ran.append((b, i))))
    model(x)
    for handle in handles:
        handle.remove()
    return ran


def test_global_drop_path_runs_one_column_through_the_whole_network() -> None:
    torch.manual_seed(0)
    model = tiny(global_drop=1.0).train()
    chosen = set()
    for _ in range(30):
        ran = columns_run(model, torch.randn(2, 3, 4, 4))
        (column,) = {i for _, i in ran}  # one column, the same in every block
        assert sorted(ran) == [(b, column) for b in range(2) for _ in range(2**column)]
        chosen.add(column)
    assert chosen == {0, 1, 2}  # every column can be drawn


def test_half_the_mini_batches_take_a_global_column() -> None:
    torch.manual_seed(0)
    model = FractalNet((2,), 3, dropout=(0.0,)).train()  # the paper's mix: global_drop=0.5, local drop_path=0.15
    x = torch.randn(1, 3, 2, 2)
    global_passes = sum(len({i for _, i in columns_run(model, x)}) == 1 for _ in range(400))
    assert global_passes / 400 == pytest.approx(0.5, abs=0.1)  # 4 standard deviations of a binomial(400, 0.5)
    assert all(len(columns_run(model.eval(), x)) == 7 for _ in range(3))  # evaluation: every conv


def test_dropout_by_block_after_each_convolution_before_its_norm() -> None:
    model = build_on_meta("fractalnet20")
    for block, rate in zip(model.blocks, (0.0, 0.1, 0.2, 0.3, 0.4), strict=True):
        units = [unit for column in block.columns for unit in column]
        assert len(units) == 7 and all(unit.drop.p == rate for unit in units)
        assert all(list(dict(unit.named_children())) == ["conv", "drop", "norm", "act"] for unit in units)
    assert model.drop_path == 0.15 and model.global_drop == 0.5
    assert all(block.join.drop_path == 0.15 for block in model.blocks)


def test_forward_backward_reaches_every_parameter_and_the_maps_halve_each_block() -> None:
    torch.manual_seed(0)
    model = FractalNet((4, 8), 2, dropout=(0.1, 0.2), num_classes=5, drop_path=0.0, global_drop=0.0)
    x = torch.randn(2, 3, 8, 8)
    assert model.forward_features(x).shape == (2, 8, 2, 2)
    logits = model(x)
    assert logits.shape == (2, 5)
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_paper_init_is_caffes_xavier() -> None:
    torch.manual_seed(0)
    model = FractalNet((16, 512), 2, dropout=(0.0, 0.0))
    conv = model.blocks[1].columns[1][1].conv  # 512 x 512 x 3 x 3
    bound = math.sqrt(3 / (512 * 9))  # uniform with variance 1/fan_in
    assert conv.weight.abs().max().item() <= bound
    assert conv.weight.std().item() == pytest.approx(1 / math.sqrt(512 * 9), rel=0.01)
    assert conv.bias is None and (model.fc.bias == 0).all()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 2 * 3 and all((bn.weight == 1).all() and (bn.bias == 0).all() for bn in norms)
    with torch.device("meta"):
        without_norm = FractalNet((4,), 2, dropout=(0.0,), norm="none")
    assert all(m.bias is not None for m in without_norm.modules() if isinstance(m, nn.Conv2d))  # no norm: biases


@pytest.mark.parametrize(("norm", "groups"), [("batch", None), ("group", [2, 2, 2, 4, 4, 4]), ("layer", [1] * 6)])
def test_switches_replace_every_relu_and_batch_norm(norm: str, groups: list[int] | None) -> None:
    with torch.device("meta"):
        model = FractalNet((4, 8), 2, dropout=(0.0, 0.0), norm=norm, activation="elu")
        paper = FractalNet((4, 8), 2, dropout=(0.0, 0.0))
    units = [unit for block in model.blocks for column in block.columns for unit in column]
    assert len(units) == 2 * 3 and all(isinstance(unit.act, nn.ELU) for unit in units)
    assert not any(isinstance(module, nn.ReLU) for module in model.modules())
    if groups is None:
        assert all(type(unit.norm) is nn.BatchNorm2d for unit in units)
    else:  # 4 and 8 channels: groups of 2 channels (models._norms), or one group (layer norm)
        assert [unit.norm.num_groups for unit in units if isinstance(unit.norm, nn.GroupNorm)] == groups
    assert count_parameters(model) == count_parameters(paper)  # a scale and a shift a channel, as batch norm


def test_classifier_interface_and_least_input() -> None:
    model = tiny(in_channels=1, num_classes=3)
    assert model.get_classifier() is model.fc
    model.reset_classifier(5)
    assert model.eval()(torch.randn(2, 1, 9, 9)).shape == (2, 5) and model.num_classes == 5
    with pytest.raises(ValueError, match=r"^FractalNet needs images of at least 32x32 pixels"):
        build_on_meta("fractalnet20")(torch.empty(1, 3, 16, 16, device="meta"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"columns": 0}, r"^columns must be a positive integer, got 0$"),
        ({"channels": ()}, r"^channels must be positive integers, one a block, got \(\)$"),
        ({"dropout": (0.1,)}, r"^dropout must give one rate a block \(2 blocks\), got \[0.1\]$"),
        ({"dropout": (0.1, 1.0)}, r"^dropout must be in \[0, 1\), got 1.0$"),
        ({"drop_path": 1.0}, r"^drop_path must be in \[0, 1\), got 1.0$"),
        ({"global_drop": 1.5}, r"^global_drop must be in \[0, 1\], got 1.5$"),
        ({"norm": "local_response"}, r"^norm='local_response' is not available for FractalNet; accepted: batch, "),
    ],
)
def test_bad_options_name_the_accepted_values(options: dict, message: str) -> None:
    arguments = {"channels": (4, 4), "columns": 2, "dropout": (0.0, 0.0), **options}
    with pytest.raises(ValueError, match=message):
        FractalNet(arguments.pop("channels"), arguments.pop("columns"), **arguments)


def test_config_lists_every_option_with_its_default_and_10_classes() -> None:
    check_model_config("fractalnet20")
    assert inspect.signature(get_model_builder("fractalnet20")).parameters["num_classes"].default == 10
    with pytest.raises(TypeError, match="fractalnet20 takes no argument 'columns'"):
        create_model("fractalnet20", columns=4)
