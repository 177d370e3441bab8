"""Files that carry code are refused by every entry point that reads weights, and the code never runs.

``write_malicious_checkpoint`` and ``write_malicious_pickle`` are for other tests too (resume, predict,
export): ``from test_safety import REFUSAL, write_malicious_checkpoint``.
"""

from __future__ import annotations

import builtins
import os
import pickle
import re
from pathlib import Path

import pytest
import torch

import models
from conftest import ROOT, run_script
from training.checkpoint_io import read_net_weights

# the start of the one line with which every reader refuses such a file
REFUSAL = "holds code or objects other than tensors and plain data; refusing to load it (weights_only=True)"


class CreatesFile:
    """Unpickled without ``weights_only``, creates ``marker``: with ``os.system``, or ``builtins.exec`` of Python."""

    def __init__(self, marker: Path, via: str) -> None:
        self.marker = marker
        self.via = via

    def __reduce__(self) -> tuple[object, tuple[str]]:
        if self.via == "exec":
            return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)
        return os.system, (f"touch '{self.marker}'",)


def write_malicious_checkpoint(path: Path, marker: Path, via: str = "system") -> Path:
    """A checkpoint as ``scripts/train.py`` writes it (run config, ``net.`` weights), plus an object whose unpickling
    would create ``marker`` (``via`` "system" or "exec"); saved with ``torch.save`` (zip format)."""
    net = models.create_model("lenet5")
    checkpoint = {
        "state_dict": {f"net.{key}": value for key, value in net.state_dict().items()},
        "hyper_parameters": {"run_config": {"model": {"name": "lenet5"}}},
        "payload": CreatesFile(marker, via),
    }
    torch.save(checkpoint, path, _use_new_zipfile_serialization=True)
    return path


def write_malicious_pickle(path: Path, marker: Path, via: str = "system") -> Path:
    """A plain pickle (``pickle.dump``, not ``torch.save``) of a state dict and an object that would create
    ``marker``."""
    with path.open("wb") as file:
        pickle.dump({"state_dict": {"w": [0.0]}, "payload": CreatesFile(marker, via)}, file)
    return path


WRITERS = {"torch.save": write_malicious_checkpoint, "pickle": write_malicious_pickle}


@pytest.fixture(params=[(kind, via) for kind in WRITERS for via in ("system", "exec")], ids=lambda p: "-".join(p))
def malicious(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    """A malicious file (each format and payload) and the marker its code would create."""
    kind, via = request.param
    marker = tmp_path / "marker"
    path = WRITERS[kind](tmp_path / f"evil-{kind}-{via}.ckpt", marker, via)
    yield path, marker
    assert not marker.exists(), "the file's code ran"


def test_the_payload_is_real(tmp_path: Path) -> None:
    """Loaded without weights_only, the file would run its code: the tests below test a real threat."""
    marker = tmp_path / "marker"
    write_malicious_pickle(tmp_path / "evil.pkl", marker, via="exec")
    with (tmp_path / "evil.pkl").open("rb") as file:
        pickle.load(file)  # the unsafe load that the readers never do
    assert marker.exists()


def test_create_model_refuses(malicious: tuple[Path, Path]) -> None:
    path, _ = malicious
    with pytest.raises(ValueError, match=re.escape(f"{path} {REFUSAL}")) as error:
        models.create_model("lenet5", pretrained=path)
    assert "Only load checkpoints you trust" in str(error.value) and "\n" not in str(error.value)


def test_the_other_readers_refuse(malicious: tuple[Path, Path]) -> None:
    path, _ = malicious
    for read in (read_net_weights, lambda p: models.load_torchvision_weights(models.create_model("lenet5"), p)):
        with pytest.raises(ValueError, match=re.escape(REFUSAL)):
            read(path)


def test_torch_hub_refuses(malicious: tuple[Path, Path]) -> None:
    path, _ = malicious
    with pytest.raises(ValueError, match=re.escape(REFUSAL)):
        torch.hub.load(str(ROOT), "lenet5", source="local", pretrained=str(path))


@pytest.mark.parametrize("kind", list(WRITERS))
@pytest.mark.parametrize(
    ("script", "argument"), [("train.py", "model.pretrained"), ("eval.py", "ckpt_path")], ids=["train", "eval"]
)
def test_scripts_refuse_in_one_line(tmp_path: Path, kind: str, script: str, argument: str) -> None:
    marker = tmp_path / "marker"
    path = WRITERS[kind](tmp_path / "evil.ckpt", marker)
    result = run_script(script, f"{argument}={path}", "trainer.accelerator=cpu", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert REFUSAL in line and str(path) in line
    assert "Traceback" not in result.stderr
    assert not marker.exists()
