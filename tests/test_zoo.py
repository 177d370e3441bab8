"""The whole zoo: every name is registered, has a config, trains through scripts/train.py's path, and
the summary tool counts parameters and multiply-adds as torchvision's metadata does."""

from pathlib import Path

import pytest
import torch

import models
from conftest import CONFIG_DIR, ROOT, build_on_meta, count_parameters, run_script
from models.summary import summarize
from training.tasks import train

ISSUE_NAMES = {
    "lenet5", "lenet5_paper", "alexnet", "alexnet_tv", "zfnet",
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "googlenet", "googlenet_tv",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "densenet121", "densenet161", "densenet169", "densenet201", "densenet_bc_100",
    "squeezenet1_0", "squeezenet1_1",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
    "wrn_28_10", "wrn_16_8", "wrn_40_4",
    "nin_cifar10",
    "fractalnet20",
    "resnext29_8x64d", "resnext29_16x64d",
    "preact_resnet164", "preact_resnet1001", "preact_resnet110",
    "preact_resnet18", "preact_resnet34", "preact_resnet50", "preact_resnet101", "preact_resnet152", "preact_resnet200",
    "inception_v3",
    "xception",
}  # fmt: skip
CONFIGURED = sorted(
    path.stem for path in (CONFIG_DIR / "model").glob("*.yaml") if "models.create_model" in path.read_text()
)


def native_input_size(name: str) -> tuple[int, int, int]:
    return build_on_meta(name).native_input_size


def slow_to_train(name: str) -> bool:
    """A step takes seconds on a CPU: an ImageNet-sized input, tens of millions of parameters (ResNeXt-29), or
    thousands of layers (pre-activation ResNet-1001)."""
    model = build_on_meta(name)
    too_big = count_parameters(model) > 20_000_000 or len(list(model.modules())) > 2000
    return model.native_input_size[1] > 64 or too_big


# After one step a batch norm's running statistics are still nearly their initial ones, so in evaluation a
# 1001-layer pre-activation stack, whose identity paths add up every unit's unnormalised output, overflows float32;
# group norm has no running statistics and takes the same path through training and testing.
OVERRIDES = {"preact_resnet1001": ["model.norm=group"]}


def test_every_name_of_the_zoo_is_registered() -> None:
    assert set(models.list_models()) >= ISSUE_NAMES


def test_every_registered_model_has_a_config_and_no_registry_config_is_orphaned() -> None:
    assert sorted(models.list_models()) == CONFIGURED


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=pytest.mark.slow) if slow_to_train(name) else name for name in models.list_models()],
)
def test_every_model_trains_through_the_train_entry_point(train_config, name: str) -> None:
    channels, size, _ = native_input_size(name)
    cfg = train_config(
        f"model={name}",
        "data=fake",
        f"data.image_size={size}",
        f"data.in_channels={channels}",
        "data.batch_size=2",
        "data.train_size=2",
        "data.val_size=2",
        "data.test_size=2",
        "debug=fdr",
        *OVERRIDES.get(name, []),
    )
    summary = train(cfg)
    assert 0.0 <= summary["test/acc"] <= 1.0
    assert torch.isfinite(torch.tensor(summary["test/loss"]))


def test_summary_of_lenet5() -> None:
    summary = summarize(models.create_model("lenet5"), (1, 32, 32))
    assert summary.parameters == 61_706
    # C1 6x28x28x25 + C3 16x10x10x150 + C5 120x400 + F6 120x84 + output 84x10
    assert summary.macs == 117_600 + 240_000 + 48_000 + 10_080 + 840
    assert [row.name for row in summary.rows if row.parameters] == [
        "features.c1", "features.c3", "features.c5", "features.f6", "classifier",
    ]  # fmt: skip
    assert summary.rows[0].output_shape == (6, 28, 28)


@pytest.mark.slow
def test_summary_of_resnet50_matches_torchvision() -> None:
    summary = summarize(models.create_model("resnet50"), (3, 224, 224))
    assert summary.parameters == 25_557_032
    assert summary.macs / 1e9 == pytest.approx(4.09, abs=0.005)  # torchvision's "GFLOPS" 4.089


@pytest.mark.slow
def test_summary_of_vgg16_matches_torchvision_and_the_lecture_notes() -> None:
    summary = summarize(models.create_model("vgg16"), (3, 224, 224))
    assert summary.parameters == 138_357_544
    assert summary.macs / 1e9 == pytest.approx(15.47, abs=0.005)  # torchvision's "GFLOPS" 15.47
    # The notes add up the input and every conv, pool and FC output of D: 15.2 million values
    # (torchvision's adaptive pool, the identity at 224x224, is not counted again).
    assert summary.activations == 150_528 + 2 * 3_211_264 + 802_816 + 2 * 1_605_632 + 401_408 + 3 * 802_816 + (
        200_704 + 3 * 401_408 + 100_352 + 3 * 100_352 + 25_088 + 4096 + 4096 + 1000
    )
    assert summary.activation_megabytes == pytest.approx(summary.activations * 4 / 2**20)


def test_summary_script_prints_the_table_and_totals(tmp_path: Path) -> None:
    result = run_script("summary.py", "model=lenet5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "features.c3" in result.stdout
    assert "parameters: 61,706" in result.stdout
    assert "multiply-adds: 416.52 K (416,520)" in result.stdout
    assert "forward activations per image:" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model=lenett5"], "error: unknown model 'lenett5'; did you mean lenet5"),
        ([], "error: model=<name> is required"),
        (["model=lenet5", "size=3"], "error: unknown argument 'size=3'"),
        (["model=lenet5", "input_size=32x32"], "error: input_size must be CxHxW, got '32x32'"),
    ],
)
def test_summary_script_rejects_bad_input_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_script("summary.py", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1


def test_readme_lists_the_summary_command() -> None:
    assert "python scripts/summary.py model=" in (ROOT / "README.md").read_text()
