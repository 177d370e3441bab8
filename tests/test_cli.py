"""The scripts as a user runs them: bad input ends in one clear line and a non-zero exit."""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from conftest import CONFIG_DIR, run_script
from training.cli import run
from training.tasks import train


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model=lenett5"], "error: unknown model 'lenett5'; did you mean lenet5? accepted: alexnet, alexnet_tv, "),
        (
            ["data=svhn"],
            "error: unknown data 'svhn'; accepted: adding, cifar10, cifar100, digits, digits_attributes, fake, ",
        ),
        (
            ["optimizer.lrr=0.1"],
            "error: unknown optimizer setting 'lrr'; did you mean lr? accepted: lr, momentum, nesterov, weight_decay",
        ),
        (["trainer.max_epochs=abc"], "error: trainer.max_epochs: expected int or None, got 'abc' (str)"),
        (["optimizer.lr=-1"], "error: optimizer: Invalid learning rate: -1"),
        (["data.batch_size=0"], "error: data: batch_size must be a positive integer, got 0"),
    ],
)
def test_train_rejects_bad_input_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_script("train.py", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = error_lines(result.stderr)
    assert line.startswith(message)
    assert "Traceback" not in result.stderr


def test_train_refuses_to_reuse_a_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "old_run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("earlier: run\n")
    result = run_script("train.py", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2
    assert "already holds a run (.hydra); nothing was changed" in error_lines(result.stderr)[0]
    assert (run_dir / ".hydra" / "config.yaml").read_text() == "earlier: run\n"


@pytest.mark.parametrize(("name", "content"), [("missing.ckpt", None), ("garbage.ckpt", b"\x00garbage")])
def test_eval_rejects_a_missing_or_broken_checkpoint(tmp_path: Path, name: str, content: bytes | None) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = run_script("eval.py", f"ckpt_path={path}", cwd=tmp_path)
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert str(path) in line
    assert "Traceback" not in result.stderr


def _compositions(main: Callable[[], None], args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """How many times ``main`` composes the training config from the command line ``args``: each composition reads
    the chosen optimizer's file once."""
    option = (CONFIG_DIR / "optimizer" / "sgd.yaml").resolve()
    load, count = OmegaConf.load, 0

    def counting_load(file: Any) -> Any:
        nonlocal count
        count += Path(getattr(file, "name", file)).resolve() == option
        return load(file)

    with monkeypatch.context() as patch:
        patch.setattr(OmegaConf, "load", counting_load)
        patch.setattr(sys, "argv", ["scripts/train.py", *args])
        try:
            main()
        finally:
            GlobalHydra.instance().clear()
    return count


def test_a_train_run_composes_its_config_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``scripts/train.py``'s run composes no more often than a bare ``hydra.main`` app of the same config: once for
    the run (and once more inside ``hydra.main``, which reads ``hydra.mode``); its checks compose nothing."""
    monkeypatch.chdir(tmp_path)
    quick = [
        "trainer.accelerator=cpu", "callbacks.progress_bar=null", "callbacks.model_summary=null",
        "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=2", "test=false",
        "optimizer.lr=0.1", f"paths.log_dir={tmp_path}/logs",
    ]  # fmt: skip
    bare = hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")(lambda cfg: None)
    expected = _compositions(bare, [*quick, f"hydra.run.dir={tmp_path}/bare"], monkeypatch)
    assert 1 <= expected <= 2
    seen = _compositions(lambda: run(train, "train"), [*quick, f"hydra.run.dir={tmp_path}/run"], monkeypatch)
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert seen == expected


def test_a_sweep_of_an_unknown_key_is_refused_before_its_directory_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(sys, "argv", ["scripts/train.py", "-m", "optimizer.lrr=0.1,0.2", f"paths.log_dir={tmp_path}"])
    with pytest.raises(SystemExit) as exit_:
        run(train, "train")
    GlobalHydra.instance().clear()
    assert exit_.value.code == 2
    assert error_lines(capsys.readouterr().err) == [
        "error: unknown optimizer setting 'lrr'; did you mean lr? accepted: lr, momentum, nesterov, weight_decay"
    ]
    assert list(tmp_path.iterdir()) == []
