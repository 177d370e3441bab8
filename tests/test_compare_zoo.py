"""scripts/compare_zoo.py on three small ImageNet networks with one timed pass, through its entry point in this process
(README.md's command runs it as a user would): the table's rows against ``summarize`` and torchvision's metadata,
the picture, the memory count, and the refusals in one line."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import models
from conftest import ROOT
from models.summary import summarize
from training import zoo_comparison
from training.cli import run_plain
from training.zoo_comparison import DPI, FIGSIZE, PAPER_TOP1, PeakTensorMemory, imagenet_models

NAMES = ["alexnet", "squeezenet1_0", "resnet18"]  # a paper's figure, two of torchvision's weights


def table_rows(text: str) -> dict[str, dict[str, str]]:
    """The Markdown table's rows by network name, each a mapping of column to cell."""
    lines = [line for line in text.splitlines() if line.startswith("|") and not line.startswith("|---")]
    columns = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [
        dict(zip(columns, (cell.strip() for cell in line.strip("|").split("|")), strict=True)) for line in lines[1:]
    ]
    return {row["network"].strip("`"): row for row in rows}


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where the script compared ``NAMES`` at batch 1 and 2 into picture.png and table.md."""
    directory = tmp_path_factory.mktemp("compare_zoo")
    args = (f"models={','.join(NAMES)}", "batch_sizes=1,2", "repeats=1", "out=picture.png", "table=table.md")
    assert run_in_process(*args, cwd=directory) == (0, "")
    return directory


def test_the_table_has_summarys_counts_for_each_network(compared: Path) -> None:
    rows = table_rows((compared / "table.md").read_text())
    assert list(rows) == NAMES
    for name, row in rows.items():
        net = models.create_model(name)
        summary = summarize(net, net.native_input_size)
        assert row["parameters"] == f"{summary.parameters:,}"
        assert row["GMACs"] == f"{summary.macs / 1e9:.3f}"
        for column in ("ms/image, batch 1", "ms/image, batch 2", "MB/image, batch 1", "MB/image, batch 2"):
            assert float(row[column]) > 0


def test_accuracies_come_from_torchvision_or_the_papers_table(compared: Path) -> None:
    rows = table_rows((compared / "table.md").read_text())
    for name in ("squeezenet1_0", "resnet18"):
        weights = torchvision.models.get_model_weights(models.TORCHVISION_NAMES[name]).DEFAULT
        assert float(rows[name]["top-1 (%)"]) == weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
        assert rows[name]["top-1 from"] == f"torchvision DEFAULT weights ({weights.name})"
    accuracy, source = PAPER_TOP1["alexnet"]  # the paper's form, not torchvision's (alexnet_tv)
    assert (float(rows["alexnet"]["top-1 (%)"]), rows["alexnet"]["top-1 from"]) == (accuracy, source)


def test_the_picture_is_a_png_of_the_figures_size(compared: Path) -> None:
    with Image.open(compared / "picture.png") as image:
        assert image.format == "PNG"
        assert image.size == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
        image.verify()


def test_the_paper_table_cites_a_table_and_never_doubles_torchvision() -> None:
    for name, (accuracy, source) in PAPER_TOP1.items():
        assert name not in models.TORCHVISION_NAMES
        assert 0 < accuracy < 100
        assert re.fullmatch(r"[A-Z][\w &.]+ \d{4}b?, Table \d+ \(.+\)", source), source


def test_every_registered_network_of_imagenet_size_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    names = imagenet_models()
    assert {"alexnet", "zfnet", "inception_v3", "vgg16", "preact_resnet200", "wide_resnet50_2"} <= set(names)
    assert not {"resnet20", "wrn_28_10", "lenet5", "nin_cifar10", "fractalnet20"} & set(names)

    class Wide(models.ClassifierNet):  # a family registered later, of Xception's 299x299 input
        native_input_size = (3, 299, 299)

    def newcomer() -> Wide:
        return Wide()

    newcomer.__annotations__["return"] = Wide  # as register_model leaves it: the class, not its name

    monkeypatch.setattr(models, "list_models", lambda: [*names, "newcomer"])
    real_builder = models.get_model_builder
    monkeypatch.setattr(
        models, "get_model_builder", lambda name: newcomer if name == "newcomer" else real_builder(name)
    )
    assert zoo_comparison.imagenet_models() == [*names, "newcomer"]


@pytest.mark.parametrize(("inplace", "expected"), [(False, 3200), (True, 2400)])
def test_peak_memory_counts_the_tensors_alive_at_once(inplace: bool, expected: int) -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=inplace), nn.Conv2d(8, 4, 1)).eval()
    inputs = torch.randn(2, 3, 5, 5)
    counter = PeakTensorMemory([*net.parameters(), inputs])
    with torch.inference_mode(), counter:
        net(inputs)
    # conv1's output 2x8x5x5 floats = 1,600 bytes; ReLU's a second 1,600 unless in place; conv1's is freed before
    # conv2's 2x4x5x5 = 800 bytes: peak 1,600 + 1,600 = 3,200, or in place 1,600 + 800 = 2,400
    assert counter.peak == expected


def run_in_process(*args: str, cwd: Path) -> tuple[int, str]:
    """scripts/compare_zoo.py's ``main`` through ``run_plain``, in this process: the exit status and stderr."""
    spec = importlib.util.spec_from_file_location("compare_zoo", ROOT / "scripts" / "compare_zoo.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    stderr, argv, previous = io.StringIO(), sys.argv, Path.cwd()
    sys.argv = ["scripts/compare_zoo.py", *args]
    os.chdir(cwd)
    code = 0
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            run_plain(script.main)
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = argv
        os.chdir(previous)
    return code, stderr.getvalue()


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("models=resnet20", "error: models: 'resnet20' names no ImageNet network of the zoo; did you mean resnet50"),
        ("models=vgg*,nosuch*", "error: models: 'nosuch*' names no ImageNet network of the zoo; accepted: alexnet,"),
        ("batch_sizes=1,x", "error: batch_sizes: expected a positive integer, got 'x'"),
        ("repeats=0", "error: repeats: expected a positive integer, got '0'"),
        ("device=tpu", "error: device: expected cpu or cuda, got 'tpu'"),
        ("overwrite=yes", "error: overwrite: expected true or false, got 'yes'"),
        ("out=picture.jpg", "error: out: expected a file path ending in .png, got 'picture.jpg'"),
        ("table=table.txt", "error: table: expected a file path ending in .md, got 'table.txt'"),
        ("model=resnet18", "error: unknown argument 'model=resnet18'; accepted: models=, batch_sizes=, repeats="),
    ],
)
def test_a_bad_option_ends_in_one_line(argument: str, message: str, tmp_path: Path) -> None:
    code, stderr = run_in_process(argument, cwd=tmp_path)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith(message), stderr
    assert not list(tmp_path.iterdir())


def test_an_existing_output_is_kept_unless_overwrite(compared: Path) -> None:
    before = {path.name: path.read_bytes() for path in (compared / "picture.png", compared / "table.md")}
    code, stderr = run_in_process("models=squeezenet1_1", "out=picture.png", "table=other.md", cwd=compared)
    assert (code, stderr) == (
        2,
        "error: picture.png already exists; nothing was written (overwrite=true replaces it)\n",
    )
    assert not (compared / "other.md").exists()
    assert {name: (compared / name).read_bytes() for name in before} == before


def test_overwrite_true_replaces_both_files(compared: Path, tmp_path: Path) -> None:
    for name in ("picture.png", "table.md"):
        shutil.copy(compared / name, tmp_path / name)
    args = ("models=squeezenet1_1", "batch_sizes=1", "repeats=1", "out=picture.png", "table=table.md", "overwrite=true")
    assert run_in_process(*args, cwd=tmp_path) == (0, "")
    assert list(table_rows((tmp_path / "table.md").read_text())) == ["squeezenet1_1"]
    assert (tmp_path / "picture.png").read_bytes() != (compared / "picture.png").read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["picture.png", "table.md"]  # no temporary file left
