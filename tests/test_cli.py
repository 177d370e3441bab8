"""The scripts as a user runs them: bad input ends in one clear line and a non-zero exit."""

from pathlib import Path

import pytest

from conftest import run_script


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
