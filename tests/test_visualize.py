"""training/visualize.py and scripts/visualize.py: every method on every family of the zoo, the occlusion margin of
the digits-trained LeNet-5, the files written, and bad input refused in one line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure
from test_monitoring import read_events
from test_predict import checkpoint, digit_files  # noqa: F401 (module fixtures: LeNet-5 trained on the digits)
from torch import nn

import models
from conftest import build_on_meta, compose_config, count_parameters, run_script
from data.normalize import Normalizer
from models.densenet import DenseNet, DenseNetCifar
from models.nin import NiN
from models.resnet import BasicBlock, CifarResNet, ResNet
from models.resnext import ResNeXtCifar
from models.wide_resnet import WideResNet
from training import deconvnet as zeiler_fergus
from training import load_model
from training.config import UserError
from training.tasks import train
from training.visualize import (
    MAPS,
    METHODS,
    Inspection,
    embed,
    inspectable,
    occlusion,
    penultimate_features,
    split_images,
    visualize,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum.*")  # its notes on requires_grad and ReLU hooks


# The families the deconvnet inverts as Zeiler & Fergus do: one chain of convolutions, pools, activations and linear
# layers; the others (branches that add or concatenate, LeNet-5's trainable subsampling) are projected through their
# branches by Captum's NeuronDeconvolution, their top patches cut by the structural surrogate's receptive field
ONE_CHAIN = {"lenet5", "alexnet", "alexnet_tv", "zfnet", "vgg11", "nin_cifar10"}
# top_patches below an earlier stage where the last one's receptive field is many times the test's image, which the
# surrogate enlarges until the field fits (Inception-v3's Mixed_7c sees 1311 pixels: a minute of float64 on a CPU)
TOP_PATCHES_LAYER = {
    "inception_v3": "Mixed_5b",
    "fractalnet20": "blocks.1",
    "googlenet": "inception3b",
    "preact_resnet110": "layer1",
}

# Families whose widths and depths are arguments, built small; the others as their first registered builder
SMALL = {
    DenseNet: lambda: DenseNet(4, (1, 1, 1, 1), 8, num_classes=10),
    DenseNetCifar: lambda: DenseNetCifar(4, (1, 1, 1), 8),
    ResNet: lambda: ResNet(BasicBlock, (1, 1, 1, 1), num_classes=10),
    CifarResNet: lambda: CifarResNet(1),
    ResNeXtCifar: lambda: ResNeXtCifar(11, 2, 4),
    WideResNet: lambda: WideResNet(10, 1),
    NiN: lambda: NiN(((3, (8, 8, 8)), (3, (8, 8, 10)))),
}


def families() -> list:
    """The first registered name of each class of the zoo with its class; slow where it is built at full size with
    tens of millions of weights (AlexNet, ZFNet, VGG: seconds to initialise and copy on a CPU)."""
    found: dict[type, tuple[str, int]] = {}
    for name in models.list_models():
        model = build_on_meta(name)
        found.setdefault(type(model), (name, count_parameters(model)))
    return [
        pytest.param(name, family, id=name, marks=[pytest.mark.slow] if family not in SMALL and size > 50e6 else [])
        for family, (name, size) in found.items()
    ]


def small_model(name: str, family: type) -> nn.Module:
    torch.manual_seed(0)
    return SMALL[family]() if family in SMALL else models.create_model(name, num_classes=10)


def inspection_of(net: nn.Module, images: torch.Tensor, **settings: object) -> Inspection:
    channels = images.shape[1]
    normalizer = Normalizer(torch.full((channels,), 0.5), torch.full((channels,), 0.25))
    net = inspectable(net)
    with torch.no_grad():
        targets = net(images).argmax(dim=-1)
    return Inspection(net=net, images=images, targets=targets, normalizer=normalizer, **settings)


@pytest.mark.parametrize(("name", "family"), families())
def test_every_method_maps_every_family_at_the_input_size(name: str, family: type) -> None:
    net = small_model(name, family)
    side = max(net.min_input_size, 32 if family in SMALL else 16)
    images = torch.randn(1, net.in_channels, side, side, generator=torch.Generator().manual_seed(0))
    inspection = inspection_of(net, images, window=side // 2, stride=side // 2, steps=2, units=2, k=2)
    for method, maps in MAPS.items():
        for title, panel in maps(inspection).items():
            assert panel.shape[0] == 1 and panel.shape[-2:] == (side, side), (method, title, panel.shape)
            assert panel.dim() in (3, 4) and torch.isfinite(panel).all(), (method, title)
    features = penultimate_features(inspection.net, images)
    assert features.shape[0] == 1 and features.dim() == 2 and torch.isfinite(features).all()
    figure = METHODS["top_patches"](replace(inspection, layer=TOP_PATCHES_LAYER.get(name)))
    assert isinstance(figure, Figure) and len(figure.axes) == 2 * 2  # units=2 rows of one image's patch, projection
    assert figure.get_suptitle().endswith("projections" if name in ONE_CHAIN else "projections (through its branches)")


def test_tsne_embeds_in_two_dimensions_and_needs_a_data_set() -> None:
    features = torch.randn(12, 5, generator=torch.Generator().manual_seed(0))
    assert embed(features).shape == (12, 2)
    with pytest.raises(UserError, match="at least 4 images, got 3"):
        embed(features[:3])


def test_occluding_the_strokes_lowers_the_class_probability_more_than_occluding_background(checkpoint: Path) -> None:  # noqa: F811
    """Zeiler & Fergus's Figure 7 claim on the digits: the digit's strokes, not the background, carry the class.

    Over the whole test split (360 digits), measured on this LeNet-5 (two epochs): the stroke pixels (above half
    brightness) set to the occluder (the training mean) leave the true class 0.63 of probability on average, as many
    background pixels (below 0.05) set to it leave 0.78; the occlusion map (an 8x8 square every 4 pixels) is lower on
    the strokes than on the background by 0.018 on average. The bounds keep a third of each margin or less."""
    model = load_model(checkpoint)
    images, labels = split_images(model, 10_000)
    assert len(images) == 360
    inspection = Inspection(
        net=inspectable(model.net), images=images, targets=labels, normalizer=model.normalizer, stride=4
    )
    brightness = inspection.display()[:, 0]
    stroke, background = brightness > 0.5, brightness < 0.05

    # as many background pixels as there are stroke pixels, drawn at random from each image's background
    generator = torch.Generator().manual_seed(0)
    same_area = torch.zeros_like(background)
    for image in range(len(images)):
        where = background[image].flatten().nonzero()[:, 0]
        chosen = where[torch.randperm(len(where), generator=generator)[: int(stroke[image].sum())]]
        same_area[image].view(-1)[chosen] = True
    occluder = torch.zeros_like(images)  # Inspection's occluder: the training mean, 0 after normalisation

    def probability(mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            occluded = torch.where(mask[:, None], occluder, images)
            return inspection.net(occluded).softmax(dim=-1).gather(1, labels[:, None]).mean()

    assert probability(same_area) - probability(stroke) > 0.04

    probability_map = occlusion(inspection)["P(class), occluded"]
    on_strokes = (probability_map * stroke).sum(dim=(1, 2)) / stroke.sum(dim=(1, 2))
    on_background = (probability_map * background).sum(dim=(1, 2)) / background.sum(dim=(1, 2))
    assert (on_background - on_strokes).mean() > 0.005


def test_the_script_writes_a_new_png_and_a_new_tensorboard_event_file(checkpoint: Path, tmp_path: Path) -> None:  # noqa: F811
    logs = checkpoint.parent.parent / "tensorboard"
    logs.mkdir(exist_ok=True)
    before = {path: path.stat().st_mtime_ns for path in logs.iterdir()}
    cfg = compose_config("visualize", tmp_path, [f"ckpt_path={checkpoint}", "method=saliency", "count=3"])
    first, second = visualize(cfg), visualize(cfg)
    assert first == checkpoint.parent / f"{checkpoint.stem}_saliency.png"
    assert second == checkpoint.parent / f"{checkpoint.stem}_saliency-2.png"  # never over the earlier file
    assert first.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    after = {path: path.stat().st_mtime_ns for path in logs.iterdir()}
    assert {path: after[path] for path in before} == before and len(after) == len(before) + 2
    tags = [tag for path in set(after) - set(before) for tag in read_events(str(path)).Tags()["images"]]
    assert sorted(tags) == [f"visualize/{first.stem}", f"visualize/{second.stem}"]


def test_the_script_maps_image_files_into_out(checkpoint: Path, digit_files: list[Path], tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "pictures"
    result = run_script(
        "visualize.py",
        f"ckpt_path={checkpoint}",
        "method=gradcam",
        f"inputs=[{digit_files[0]},{digit_files[1]}]",
        f"out={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (out / f"{checkpoint.stem}_gradcam.png").is_file()
    assert f"gradcam: 2 images, written to {out / checkpoint.stem}_gradcam.png" in result.stdout


def test_target_true_explains_the_test_splits_classes(
    checkpoint: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``target=true`` on the command line is read by Hydra as the boolean true: it still means the true classes."""
    seen: list[Inspection] = []
    monkeypatch.setitem(METHODS, "saliency", lambda inspection: seen.append(inspection) or Figure())
    overrides = [f"ckpt_path={checkpoint}", "method=saliency", "count=3", "target=true", f"out={tmp_path}"]
    visualize(compose_config("visualize", tmp_path, overrides))
    (inspection,) = seen
    assert inspection.labels is not None and torch.equal(inspection.targets, inspection.labels)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["method=salency"], r"unknown method 'salency'; did you mean saliency\? accepted: saliency, "),
        (["method=gradcam", "layer=features.c9"], r"layer: LeNet5 has no layer 'features.c9'; did you mean .*accepted"),
        (["method=tsne", "count=3"], r"tsne embeds a data set: give at least 4 images, got 3"),
        (["method=occlusion", "unit=400"], r"unit: the layer has 16 channels, 0 to 15; got 400"),
        (["method=saliency", "target=maybe"], r"target: expected predicted or true, got 'maybe'"),
        (["method=saliency", "steps=0"], r"steps: expected a positive integer, got 0"),
    ],
)
def test_bad_settings_are_refused_in_one_line(checkpoint: Path, tmp_path: Path, args: list[str], message: str) -> None:  # noqa: F811
    cfg = compose_config("visualize", tmp_path, [f"ckpt_path={checkpoint}", *args])
    with pytest.raises(UserError, match=message) as error:
        visualize(cfg)
    assert "\n" not in str(error.value)


def test_a_file_that_is_not_a_checkpoint_is_refused_in_one_line(tmp_path: Path) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(UserError, match=r"notes\.ckpt") as error:
        visualize(compose_config("visualize", tmp_path, [f"ckpt_path={text}", "method=saliency"]))
    assert "\n" not in str(error.value)


def test_a_sequence_model_checkpoint_is_refused_in_one_line(tmp_path: Path) -> None:
    fast = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=2", "test=false"]
    fast += ["logger=none", "trainer.accelerator=cpu", "callbacks.progress_bar=null"]
    fast += ["callbacks.learning_rate=null", "callbacks.model_summary=null"]
    trained = train(compose_config("train", tmp_path / "run", ["experiment=rnn_adding", *fast]))
    cfg = compose_config("visualize", tmp_path, [f"ckpt_path={trained['best_checkpoint']}", "method=saliency"])
    with pytest.raises(UserError, match=r"whose inputs \(.*\) are not images; load_model, predict and export take"):
        visualize(cfg)


def test_the_deconvnet_through_branches_is_zeiler_and_fergus_rule_on_a_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """Captum's NeuronDeconvolution, used below layers that are not one chain, gives on a chain what
    training.deconvnet gives: the same projection of the same strongest activation."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.ReLU())
    images = torch.randn(3, 1, 12, 12)
    inspection = inspection_of(net, images, layer="4", unit=2)
    [direct] = MAPS["deconvnet"](inspection).values()

    def not_a_chain(*args: object) -> None:
        raise zeiler_fergus.NotAChain("as if it had branches")

    monkeypatch.setattr(zeiler_fergus, "deconvnet", not_a_chain)
    [(title, through_branches)] = MAPS["deconvnet"](inspection).items()
    assert title == "deconvnet of 4 (through its branches)"
    torch.testing.assert_close(through_branches, direct, rtol=1e-5, atol=1e-6)
