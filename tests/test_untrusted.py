"""A checkpoint is untrusted data: its stored run config never builds anything but the project's own classes, a
damaged one is named as damaged wherever it is read, and a non-finite metric is written, never dropped.

``write_with_config``, ``write_damaged`` and ``write_nan`` are for other tests too (test_bad_inputs.py).
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import pytest
import safetensors.torch
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from PIL import Image
from test_export import export_config
from test_safety import CreatesFile

import models
from conftest import compose_config, run_script
from training import load_model
from training.config import UserError, check_stored_config, config_targets
from training.export import export
from training.inference import predict
from training.sweeps import read_sweep, sweep_table
from training.tasks import evaluate, train

FAST = ["trainer.accelerator=cpu", "logger=none", "callbacks.learning_rate=null", "callbacks.progress_bar=null"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LeNet-5 digits checkpoint after a few steps (its run config as scripts/train.py stores it)."""
    run_dir = tmp_path_factory.mktemp("run")
    overrides = [*FAST, "trainer.max_epochs=1", "+trainer.limit_train_batches=3", "test=false"]
    path = Path(train(compose_config("train", run_dir, overrides))["last_checkpoint"])
    GlobalHydra.instance().clear()
    return path


def load_chain(marker: Path) -> dict[str, Any]:
    """``torch.load(io.BytesIO(base64.b64decode(<a torch.save file>)), weights_only=False)``: the file's pickle
    creates ``marker``."""
    buffer = io.BytesIO()
    torch.save(CreatesFile(marker, "system"), buffer)
    payload = base64.b64encode(buffer.getvalue()).decode()
    data = {"_target_": "io.BytesIO", "initial_bytes": {"_target_": "base64.b64decode", "s": payload}}
    return {"_target_": "torch.load", "f": data, "weights_only": False}


def write_with_config(checkpoint: Path, path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """``checkpoint`` saved again as ``path`` after ``change`` edits its stored run config (tensors, plain data)."""
    content = torch.load(checkpoint, weights_only=True)
    change(content["hyper_parameters"]["run_config"])
    torch.save(content, path)
    return path


def write_damaged(checkpoint: Path, path: Path) -> tuple[Path, str]:
    """``checkpoint`` with 8 bytes inside its largest tensor's data flipped, as ``path`` (the zip's CRC fails); and
    the name of that member of the zip archive."""
    data = bytearray(checkpoint.read_bytes())
    with zipfile.ZipFile(checkpoint) as archive:
        member = max((info for info in archive.infolist() if "/data/" in info.filename), key=lambda i: i.file_size)
    name_length, extra_length = struct.unpack("<HH", data[member.header_offset + 26 : member.header_offset + 30])
    start = member.header_offset + 30 + name_length + extra_length + member.file_size // 2
    data[start : start + 8] = bytes(byte ^ 0xFF for byte in data[start : start + 8])
    path.write_bytes(bytes(data))
    return path, member.filename


def write_nan(checkpoint: Path, path: Path, key: str = "net.features.c1.weight") -> Path:
    """``checkpoint`` with NaN in one element of the weight ``key``, saved intact as ``path``."""
    content = torch.load(checkpoint, weights_only=True)
    content["state_dict"][key].view(-1)[0] = float("nan")
    torch.save(content, path)
    return path


def test_the_chain_is_real(tmp_path: Path) -> None:
    """Instantiated as eval.py, predict.py and export.py did, the chain runs its command: the tests test a real
    threat."""
    marker = tmp_path / "marker"
    hydra.utils.instantiate(OmegaConf.create(load_chain(marker)))
    assert marker.exists()


def _entry_points(checkpoint: Path, evil: Path, tmp_path: Path) -> dict[str, Callable[[], Any]]:
    return {
        "eval": lambda: evaluate(compose_config("eval", tmp_path / "eval", [f"ckpt_path={evil}", *FAST[:1]])),
        "ensemble": lambda: evaluate(
            compose_config("eval", tmp_path / "eval", [f"ckpt_path=[{checkpoint},{evil}]", *FAST[:1]])
        ),
        "predict": lambda: predict(compose_config("predict", tmp_path, [f"ckpt_path={evil}", f"inputs={tmp_path}"])),
        "export": lambda: export(export_config(f"ckpt_path={evil}", "format=state_dict", f"out={tmp_path / 'x.pt'}")),
        "load_model": lambda: load_model(evil),
    }


ENTRY_POINTS = ["eval", "ensemble", "predict", "export", "load_model"]


@pytest.mark.parametrize("group", ["data", "model"])
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_target_chain_in_the_stored_config_never_runs(
    checkpoint: Path, tmp_path: Path, entry: str, group: str
) -> None:
    marker = tmp_path / "marker"
    evil = write_with_config(checkpoint, tmp_path / "evil.ckpt", lambda run: run.update({group: load_chain(marker)}))
    (tmp_path / "image.png").write_bytes(b"")  # predict's input, never read
    with pytest.raises(UserError) as error:
        _entry_points(checkpoint, evil, tmp_path)[entry]()
    GlobalHydra.instance().clear()
    assert not marker.exists(), "the checkpoint's command ran"
    assert str(error.value).startswith(f"{evil}: its stored run config names _target_ 'torch.load' at {group}; ")
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "eval" / "metrics.json").exists()


def test_predict_py_refuses_in_one_line(checkpoint: Path, tmp_path: Path) -> None:
    """The script as a user runs it: exit 2, one error line, no traceback, the command never run."""
    marker = tmp_path / "marker"
    evil = write_with_config(checkpoint, tmp_path / "evil.ckpt", lambda run: run.update(model=load_chain(marker)))
    (tmp_path / "image.png").write_bytes(b"")
    result = run_script("predict.py", f"ckpt_path={evil}", f"inputs={tmp_path / 'image.png'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {evil}: its stored run config names _target_ 'torch.load' at model; ")
    assert "Traceback" not in result.stderr and not marker.exists()


def _exec(marker: Path) -> dict[str, Any]:
    return {"_target_": "builtins.exec", "_args_": [f"open({str(marker)!r}, 'w').close()"]}


def _run(marker: Path) -> dict[str, Any]:
    return {"_target_": "subprocess.run", "args": ["touch", str(marker)]}


def _system(marker: Path) -> dict[str, Any]:
    return {"_target_": "os.system", "_args_": [f"touch '{marker}'"]}


def _set(key: str, value: Callable[[Path], Any]) -> Callable[[Path], Callable[[dict[str, Any]], None]]:
    """An edit of the run config: the dotted ``key`` set to ``value(marker)``."""

    def edit(marker: Path) -> Callable[[dict[str, Any]], None]:
        def change(run: dict[str, Any]) -> None:
            *parents, last = key.split(".")
            node = run
            for name in parents:
                node = node[name]
            node[last] = value(marker)

        return change

    return edit


# (an edit of the stored run config, the start of what the refusal says after "<file>: its stored run config ")
CHAINS = {
    "exec": (_set("data", _exec), "names _target_ 'builtins.exec' at data;"),
    "subprocess.run": (_set("model", _run), "names _target_ 'subprocess.run' at model;"),
    "os.system in the optimizer, partial": (
        _set("optimizer", lambda marker: {**_system(marker), "_partial_": True}),
        "names _target_ 'os.system' at optimizer;",
    ),
    "in _args_ of our data module": (
        _set("data._args_", lambda marker: [load_chain(marker)]),
        "gives _args_ to data.DigitsDataModule at data;",
    ),
    "in a list": (
        _set("data.extra", lambda marker: [_exec(marker)]),
        "names _target_ 'builtins.exec' at data.extra[0]",
    ),
    "deep in the module's arguments": (
        _set("module.extra", lambda marker: {"a": [{"b": _run(marker)}]}),
        "names _target_ 'subprocess.run' at module.extra.a[0].b;",
    ),
    "our class in another group": (
        _set("data", lambda marker: {"_target_": "pytorch_lightning.loggers.CSVLogger", "save_dir": str(marker)}),
        "names _target_ 'pytorch_lightning.loggers.CSVLogger' at data;",
    ),
    "a target that is not a name": (_set("model._target_", lambda marker: ["os.system"]), "names _target_ ['os"),
    "an environment variable": (
        _set("data.augment", lambda marker: "${oc.env:CLASSICNETS_TEST_SECRET}"),
        "holds an interpolation (${...}) at data.augment;",
    ),
    "a decoded target": (
        _set("data.augment", lambda marker: "${oc.decode:'{_target_: os.system, _args_: [touch x]}'}"),
        "holds an interpolation (${...}) at data.augment;",
    ),
    "a tensor": (_set("model.num_classes", lambda marker: torch.tensor(10)), "holds a Tensor, not a plain value,"),
}


@pytest.mark.parametrize("chain", list(CHAINS))
def test_other_chains_are_refused_before_anything_is_built(
    checkpoint: Path, tmp_path: Path, chain: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLASSICNETS_TEST_SECRET", "hunter2")
    edit, said = CHAINS[chain]
    marker = tmp_path / "marker"
    evil = write_with_config(checkpoint, tmp_path / "evil.ckpt", edit(marker))
    with pytest.raises(UserError) as error:
        load_model(evil)
    assert not marker.exists()
    assert str(error.value).startswith(f"{evil}: its stored run config {said}"), error.value
    assert "\n" not in str(error.value) and "hunter2" not in str(error.value)


@pytest.mark.parametrize("where", ["callbacks.lr_monitor", "trainer.plugins", "logger.wandb"])
def test_a_target_in_a_part_never_rebuilt_is_a_record_that_never_runs(
    checkpoint: Path, tmp_path: Path, where: str
) -> None:
    """A run's own callback (``+callbacks.lr_monitor._target_=...``) leaves checkpoints that load: the callbacks,
    loggers and trainer of a stored config are never instantiated from it, whatever they name."""
    marker = tmp_path / "marker"
    ours = write_with_config(checkpoint, tmp_path / "ours.ckpt", _set(where, lambda marker: [_exec(marker)])(marker))
    model = load_model(ours)
    (tmp_path / "eval").mkdir()
    evaluate(compose_config("eval", tmp_path / "eval", ["trainer.accelerator=cpu", f"ckpt_path={ours}"]))
    assert model.class_names and not marker.exists()


@pytest.mark.parametrize("entry", ["ensemble", "predict", "export", "resume"])
def test_a_record_target_never_runs_through_any_reader(checkpoint: Path, tmp_path: Path, entry: str) -> None:
    """The same through the other readers of a checkpoint: each reads it, uses it, and never builds the record."""
    marker = tmp_path / "marker"
    ours = write_with_config(
        checkpoint, tmp_path / "ours.ckpt", _set("callbacks.lr_monitor", lambda marker: _exec(marker))(marker)
    )
    Image.new("L", (32, 32)).save(tmp_path / "image.png")  # predict's input
    (tmp_path / "eval").mkdir()
    run = tmp_path / "resumed"
    entries = {
        **_entry_points(checkpoint, ours, tmp_path),
        "resume": lambda: train(compose_config("train", run, [*FAST, f"ckpt_path={ours}", "trainer.max_epochs=2"])),
    }
    entries[entry]()
    assert not marker.exists()


def test_the_allowed_targets_are_those_of_the_configs() -> None:
    targets = config_targets()
    assert "models.create_model" in targets["model"] and "data.DigitsDataModule" in targets["data"]
    assert targets["optimizer"]["torch.optim.SGD"] == {"_partial_"}
    assert "training.ema.EMA" in targets["callbacks"]  # configs/ema, "# @package callbacks"
    assert not any(
        target.startswith(("os.", "builtins.", "subprocess.")) for group in targets.values() for target in group
    )


@pytest.mark.parametrize(
    "experiment", sorted(path.stem for path in (Path(__file__).parents[1] / "configs" / "experiment").glob("*.yaml"))
)
def test_the_run_config_of_every_experiment_is_accepted(experiment: str, tmp_path: Path) -> None:
    required = ["data.path=corpus.txt"] if experiment == "char_lstm" else []  # no default
    cfg = compose_config("train", tmp_path, [f"experiment={experiment}", *required])
    GlobalHydra.instance().clear()
    check_stored_config(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False), "run config")


# Damaged files: each reader names them, and nothing is computed from them.
def _damaged_entry_points(path: Path, tmp_path: Path) -> dict[str, Callable[[], Any]]:
    run = tmp_path / "resumed"
    return {
        **_entry_points(path, path, tmp_path),
        "resume": lambda: train(compose_config("train", run, [*FAST, f"ckpt_path={path}", "trainer.max_epochs=2"])),
        "model.pretrained": lambda: models.create_model("lenet5", pretrained=path),
    }


@pytest.mark.parametrize("entry", ["eval", "resume", "predict", "export", "load_model", "model.pretrained"])
def test_a_checkpoint_with_flipped_bytes_is_named_damaged(checkpoint: Path, tmp_path: Path, entry: str) -> None:
    damaged, member = write_damaged(checkpoint, tmp_path / "damaged.ckpt")
    (tmp_path / "image.png").write_bytes(b"")
    with pytest.raises((UserError, ValueError)) as error:
        _damaged_entry_points(damaged, tmp_path)[entry]()
    GlobalHydra.instance().clear()
    assert str(error.value).startswith(f"{damaged} is damaged: its part {member} fails the zip's CRC check"), (
        error.value
    )
    assert not (tmp_path / "eval" / "metrics.json").exists() and not (tmp_path / "resumed" / "metrics.json").exists()


@pytest.mark.parametrize("entry", ["eval", "resume", "load_model", "model.pretrained"])
def test_a_checkpoint_whose_weights_are_nan_is_named_damaged(checkpoint: Path, tmp_path: Path, entry: str) -> None:
    damaged = write_nan(checkpoint, tmp_path / "nan.ckpt")
    assert zipfile.ZipFile(damaged).testzip() is None  # intact as a file
    with pytest.raises((UserError, ValueError)) as error:
        _damaged_entry_points(damaged, tmp_path)[entry]()
    GlobalHydra.instance().clear()
    assert str(error.value).startswith(f"{damaged} is damaged: its weight "), error.value
    assert "holds NaN" in str(error.value)


def test_a_weights_file_with_an_infinity_is_named_damaged(tmp_path: Path) -> None:
    weights = models.create_model("lenet5").state_dict()
    weights["classifier.bias"][3] = float("-inf")
    safetensors.torch.save_file(weights, tmp_path / "inf.safetensors")
    with pytest.raises(ValueError, match=r"inf\.safetensors is damaged: its weight classifier\.bias holds an infinity"):
        models.create_model("lenet5", pretrained=tmp_path / "inf.safetensors")


def test_a_non_finite_metric_is_written_not_dropped(checkpoint: Path, tmp_path: Path) -> None:
    """Finite weights so large that the logits overflow: test/loss is NaN, and metrics.json says so."""
    huge = write_with_config(checkpoint, tmp_path / "huge.ckpt", lambda run: None)
    content = torch.load(huge, weights_only=True)
    for key in ("net.classifier.weight", "net.classifier.bias"):
        content["state_dict"][key] = content["state_dict"][key].sign() * 3e38
    torch.save(content, huge)
    (tmp_path / "eval").mkdir()  # as Hydra makes the run's directory
    metrics = evaluate(compose_config("eval", tmp_path / "eval", [f"ckpt_path={huge}", *FAST[:1]]))
    GlobalHydra.instance().clear()
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text(), parse_constant=pytest.fail)
    assert written["test/loss"] == "nan" and metrics["test/loss"] != metrics["test/loss"]
    assert 0 <= written["test/acc"] <= 1


def test_the_sweep_report_reads_a_non_finite_metric(tmp_path: Path) -> None:
    for job, loss in enumerate([0.5, "nan"]):
        hydra_dir = tmp_path / str(job) / ".hydra"
        hydra_dir.mkdir(parents=True)
        (hydra_dir / "overrides.yaml").write_text(f"- optimizer.lr={10**-job}\n")
        (hydra_dir / "hydra.yaml").write_text(f"hydra:\n  job:\n    num: {job}\n  sweeper: {{}}\n")
        (hydra_dir / "config.yaml").write_text("{}\n")
        (tmp_path / str(job) / "metrics.json").write_text(json.dumps({"val/loss": loss}))
    sweep = read_sweep(tmp_path)
    markdown, _ = sweep_table(sweep, "val/loss", "minimize")
    assert [trial.number for trial in sweep.trials] == [0, 1]
    assert [line.split(" | ")[:3] for line in markdown.splitlines()[-2:]] == [
        ["| 0", "1", "0.5"],
        ["| 1", "0.1", "nan"],
    ]


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink", "hardlink"])
def test_export_never_overwrites_its_checkpoint(checkpoint: Path, tmp_path: Path, spelling: str) -> None:
    copy = tmp_path / "run" / "last.ckpt"
    copy.parent.mkdir()
    copy.write_bytes(checkpoint.read_bytes())
    out = {
        "same": copy,
        "dotdot": tmp_path / "run" / ".." / "run" / "last.ckpt",
        "symlink": tmp_path / "link.ckpt",
        "hardlink": tmp_path / "hard.ckpt",
    }[spelling]
    if spelling == "symlink":
        out.symlink_to(copy)
    elif spelling == "hardlink":
        os.link(copy, out)
    with pytest.raises(UserError, match=f"out: {out} is the checkpoint being exported, {copy}; nothing was written"):
        export(export_config(f"ckpt_path={copy}", "format=state_dict", f"out={out}", "overwrite=true"))
    GlobalHydra.instance().clear()
    assert copy.read_bytes() == checkpoint.read_bytes()
