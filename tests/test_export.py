"""Exports of a trained network (state_dict, safetensors, TorchScript, ONNX) match the network in PyTorch."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import safetensors
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from test_safety import REFUSAL, WRITERS

import models
from conftest import CONFIG_DIR, compose_config, run_script
from training import load_model
from training.config import UserError
from training.export import FORMATS, export, export_model
from training.tasks import train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LeNet-5 digits checkpoint after a few steps."""
    run_dir = tmp_path_factory.mktemp("run")
    overrides = ["trainer.accelerator=cpu", "trainer.max_epochs=1", "+trainer.limit_train_batches=3", "test=false"]
    callbacks = [
        "logger=none",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        "callbacks.learning_rate=null",
    ]
    return Path(train(compose_config("train", run_dir, [*overrides, *callbacks]))["last_checkpoint"])


def export_config(*overrides: str) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose(config_name="export", overrides=list(overrides))


def onnx_outputs(path: Path, inputs: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    [logits] = session.run(["logits"], {"images": inputs.numpy()})
    return logits


@pytest.fixture(scope="module")
def exports(checkpoint: Path) -> dict[str, Path]:
    """Every format, written beside the checkpoint."""
    return {name: export(export_config(f"ckpt_path={checkpoint}", f"format={name}")) for name in FORMATS}


def test_exports_go_beside_the_checkpoint(checkpoint: Path, exports: dict[str, Path]) -> None:
    assert {name: path.name for name, path in exports.items()} == {
        "state_dict": "last.state_dict.pt",
        "safetensors": "last.safetensors",
        "torchscript": "last.torchscript.pt",
        "onnx": "last.onnx",
    }
    assert all(path.parent == checkpoint.parent for path in exports.values())
    assert not list(checkpoint.parent.glob(".*.tmp"))


def test_state_dict_and_safetensors_load_with_create_model(checkpoint: Path, exports: dict[str, Path]) -> None:
    expected = load_model(checkpoint).net.state_dict()
    assert torch.load(exports["state_dict"], weights_only=True).keys() == expected.keys()
    for name in ("state_dict", "safetensors"):
        net = models.create_model("lenet5", pretrained=exports[name], num_classes=10, in_channels=1)
        assert all(torch.equal(value, expected[key]) for key, value in net.state_dict().items()), name
    with safetensors.safe_open(exports["safetensors"], "pt") as file:
        metadata = file.metadata()
    assert metadata["model"] == "lenet5" and json.loads(metadata["input_shape"]) == [1, 32, 32]
    assert json.loads(metadata["class_names"]) == [str(digit) for digit in range(10)]


def test_torchscript_and_onnx_give_the_networks_outputs(checkpoint: Path, exports: dict[str, Path]) -> None:
    net = load_model(checkpoint).net
    inputs = torch.randn(5, 1, 32, 32)  # another batch size than the export's example
    with torch.no_grad():
        expected = net(inputs)
        scripted = torch.jit.load(str(exports["torchscript"]))(inputs)
    assert torch.allclose(scripted, expected, atol=1e-5)
    assert np.allclose(onnx_outputs(exports["onnx"], inputs), expected.numpy(), atol=1e-4)


def test_an_existing_file_is_kept_unless_overwrite(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    out.write_text("keep me")
    with pytest.raises(UserError, match=re.escape(f"{out} already exists; nothing was written (overwrite=true")):
        export(export_config(f"ckpt_path={checkpoint}", "format=state_dict", f"out={out}"))
    assert out.read_text() == "keep me"
    export(export_config(f"ckpt_path={checkpoint}", "format=state_dict", f"out={out}", "overwrite=true"))
    assert torch.load(out, weights_only=True).keys() == load_model(checkpoint).net.state_dict().keys()


def test_bad_settings_are_one_clear_line(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^format is required: give it on the command line, format=\.\.\.$"):
        export(export_config(f"ckpt_path={checkpoint}"))
    with pytest.raises(UserError, match="format: expected one of state_dict, safetensors, torchscript, onnx, got 'pb'"):
        export(export_config(f"ckpt_path={checkpoint}", "format=pb"))
    with pytest.raises(UserError, match=f"out: no such folder: {tmp_path / 'nowhere'}"):
        export(export_config(f"ckpt_path={checkpoint}", "format=onnx", f"out={tmp_path / 'nowhere/x.onnx'}"))


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_file_that_holds_code_is_refused_and_its_code_never_runs(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "marker"
    path = WRITERS[writer](tmp_path / "evil.ckpt", marker)  # a torch.save file, or a plain pickle
    with pytest.raises(UserError, match=re.escape(f"{path} {REFUSAL}")):
        export(export_config(f"ckpt_path={path}", "format=onnx"))
    assert not marker.exists() and not (tmp_path / "evil.onnx").exists()


def test_the_script_exports_and_refuses_to_overwrite_in_one_line(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "lenet5.pt"
    result = run_script("export.py", f"ckpt_path={checkpoint}", "format=torchscript", f"out={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"written to {out}" in result.stdout and "Warning" not in result.stderr
    assert sorted(tmp_path.iterdir()) == [out]  # nothing else: no run directory, no log file
    result = run_script("export.py", f"ckpt_path={checkpoint}", "format=torchscript", f"out={out}", cwd=tmp_path)
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {out} already exists; nothing was written (overwrite=true replaces it)"
    ]


# Networks of each family's kind: a plain stack, residual blocks with batch norm, and Inception modules with
# auxiliary heads, which eval mode leaves out of the output. Small inputs and class counts keep the exports fast.
NETWORKS = {
    "lenet5": ({"in_channels": 1}, (1, 32, 32)),
    "resnet18": ({}, (3, 64, 64)),
    "googlenet": ({"aux_logits": True}, (3, 96, 96)),  # 79 pixels at least with the aux heads
    "googlenet_tv": ({"aux_logits": True}, (3, 64, 64)),
}


@pytest.mark.parametrize(  # the GoogLeNets take 4-6 s each on 2 idle CPU cores, 15-30 s on busy ones
    "name", [pytest.param(name, marks=pytest.mark.slow) if "googlenet" in name else name for name in NETWORKS]
)
def test_torchscript_and_onnx_exports_of_the_zoo_match_pytorch(name: str, tmp_path: Path) -> None:
    arguments, shape = NETWORKS[name]
    torch.manual_seed(0)
    net = models.create_model(name, num_classes=7, **arguments)
    inputs = torch.randn(3, *shape)
    net.train()
    if name.startswith("googlenet"):
        assert isinstance(net(inputs), tuple)  # (logits, aux1, aux2) in training mode
    net.eval()
    with torch.no_grad():
        expected = net(inputs)
    assert expected.shape == (3, 7)
    scripted = torch.jit.load(str(export_model(net, "torchscript", tmp_path / "net.pt", shape)))
    with torch.no_grad():
        assert torch.allclose(scripted(inputs), expected, atol=1e-4)
    assert np.allclose(
        onnx_outputs(export_model(net, "onnx", tmp_path / "net.onnx", shape), inputs), expected, atol=1e-4
    )


def test_onnx_without_the_export_extra_names_the_pip_install(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = importlib.metadata.distribution

    def without_onnxscript(name: str) -> importlib.metadata.Distribution:
        if name == "onnxscript":
            raise importlib.metadata.PackageNotFoundError(name)
        return installed(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_onnxscript)
    with pytest.raises(UserError) as error:
        export(export_config(f"ckpt_path={checkpoint}", "format=onnx", f"out={tmp_path / 'net.onnx'}"))
    assert str(error.value) == (
        "format=onnx needs onnxscript, not installed here; install the 'export' extra: "
        "pip install -c constraints.txt -e '.[export]'"
    )
    assert not (tmp_path / "net.onnx").exists()
