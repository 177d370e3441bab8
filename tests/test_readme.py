"""The README keeps itself true: every command of its code blocks, and of docs/, runs as a new user's would.

Commands are read from the ```bash blocks of README.md and docs/*.md and from the docs' indented code blocks, one
a line (a trailing ``# comment`` stripped, ``\\`` continuations joined), and run in page order (README, then the
docs alphabetically) from one fresh directory, where ``logs/`` lands: the scripts by path from this checkout, as
``conftest.run_script`` does, with limits appended so that each is quick (``LIMITS``: one epoch of two batches of
each split; a resume goes on for one more epoch; an Optuna search runs two trials). A command already run from an
earlier page is not run again.

Not run, and why:

* the install steps (``python3 -m venv``, ``. .venv/bin/activate``, ``pip install``) and ``pytest``: CI runs
  exactly the README's line (tests/test_default_run.py checks it); the ``python scripts/train.py`` after them is;
* ``tensorboard --logdir DIR``: a server; only DIR's existence is checked;
* a command whose comment begins ``needs ...`` (``# needs a GPU``, ``# needs the network``, ``# needs CIFAR-10 on
  disk``): skipped with that reason, but its overrides are checked and its config composed, so a typo fails.

A ``$ command`` in a block without a language is an example of output: when the next line is ``error: ...`` it is a
documented error, which must print exactly that line (a trailing ``...`` abbreviates its end) and exit 2; any
other ``$ command`` must exit 0.

What a command refers to is made real (``SUBSTITUTIONS``, applied in order):

* ``logs/<task>/runs/<timestamp>/checkpoints/best-epochNNN.ckpt`` (or ``last.ckpt``): that file of the newest
  run of ``<task>`` that has one; ``<checkpoint>``, ``<best checkpoint>``, ``<its best checkpoint>``: the newest
  run's best checkpoint;
* ``logs/train/multiruns/<timestamp>``: the newest sweep; ``[a.ckpt,b.ckpt,c.ckpt]``: the best checkpoints of
  its first three runs;
* ``digits.ckpt``: a command commented ``copy its best checkpoint to digits.ckpt`` is followed by that copy;
* ``photos/`` (a folder of the user's images) and ``input.txt`` (a text) are made before the first command.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from conftest import ROOT, compose_config, run_script
from training.cli import check_overrides

PAGES = [
    ROOT / "README.md",
    *(ROOT / "docs" / f"{name}.md" for name in ("checkpoints", "debugging", "monitoring", "training", "visualize")),
]
LIMITS = [
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "trainer.max_epochs=1",
]
NOT_RUN = ("python3 -m venv", ". .venv/bin/activate", "pip ", "pytest")
HYDRA_SCRIPTS = {
    "train.py": "train", "eval.py": "eval", "predict.py": "predict", "export.py": "export", "visualize.py": "visualize",
}  # fmt: skip


@dataclass(frozen=True)
class Command:
    """One command of a page: its text, where it is, its comment and the error line it must print."""

    text: str
    where: str
    comment: str = ""
    error: str = ""

    @property
    def needs(self) -> str:
        """Why it cannot run here (its comment begins ``needs``), or ``""``."""
        return self.comment if self.comment.startswith("needs ") else ""


def _split_comment(line: str) -> tuple[str, str]:
    command, _, comment = line.partition(" #")
    return command.strip(), comment.strip()


def page_commands(page: Path) -> list[Command]:
    """The commands of ``page``'s ```bash blocks, its indented code blocks and its ``$`` prompts."""
    lines = page.read_text().splitlines()
    commands: list[Command] = []
    fence = None
    pending = ""
    for number, line in enumerate(lines, 1):
        where = f"{page.relative_to(ROOT)}:{number}"
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
            continue
        if fence == "bash" or (fence is None and line.startswith("    python scripts/")):
            text = pending + line.strip()
            if text.endswith("\\"):
                pending = text[:-1]
                continue
            pending = ""
            command, comment = _split_comment(text)
            if command:
                commands += [Command(part, where, comment) for part in command.split(" && ")]
        elif fence is not None and line.startswith("$ "):
            following = lines[number] if number < len(lines) else ""
            error = following if following.startswith("error: ") else ""
            commands.append(Command(line[2:].strip(), where, error=error))
    return commands


def documented_commands() -> list[Command]:
    """Every page's commands, in page order, each once."""
    seen: set[str] = set()
    commands = []
    for page in PAGES:
        for command in page_commands(page):
            if command.text not in seen:
                seen.add(command.text)
                commands.append(command)
    return commands


def _newest(paths: list[Path]) -> Path:
    assert paths, "no file for the placeholder: an earlier command should have made one"
    return max(paths, key=lambda path: path.stat().st_mtime)


def _checkpoint(cwd: Path, match: re.Match) -> str:
    task, name = match.group(1), match.group(2)
    pattern = "last.ckpt" if name == "last" else "best-*.ckpt"
    return str(_newest(list((cwd / "logs" / task / "runs").glob(f"*/checkpoints/{pattern}"))))


def _newest_best(cwd: Path, match: re.Match) -> str:
    return str(_newest(list(cwd.glob("logs/*/runs/*/checkpoints/best-*.ckpt"))))


def _newest_sweep(cwd: Path, match: re.Match) -> Path:
    return _newest(list((cwd / "logs" / "train" / "multiruns").iterdir()))


def _ensemble(cwd: Path, match: re.Match) -> str:
    sweep = _newest_sweep(cwd, match)
    members = [str(next((sweep / str(job) / "checkpoints").glob("best-*.ckpt"))) for job in range(3)]
    return f"[{','.join(members)}]"


SUBSTITUTIONS: list[tuple[str, Callable[[Path, re.Match], str]]] = [
    (r"logs/(\w+)/runs/[^/\s]+/checkpoints/(best-epoch\d+|last)\.ckpt", _checkpoint),
    (r"<(?:its )?(?:best )?checkpoint>", _newest_best),
    (r"logs/train/multiruns/[^/\s]+", lambda cwd, match: str(_newest_sweep(cwd, match))),
    (r"\[a\.ckpt,b\.ckpt,c\.ckpt\]", _ensemble),
]


def substitute(text: str, cwd: Path) -> str:
    """``text`` with its placeholders replaced by the files the earlier commands made in ``cwd``."""
    for pattern, replacement in SUBSTITUTIONS:
        text = re.sub(pattern, lambda match, replace=replacement: replace(cwd, match), text)
    return text


def with_limits(words: list[str]) -> list[str]:
    """The arguments of a ``train.py`` command with ``LIMITS``, unless it is a debug preset or prints its config."""
    if any(word.startswith(("debug=", "--cfg")) for word in words):
        return words
    limits = [
        "trainer.max_epochs=2" if limit == "trainer.max_epochs=1" and any("ckpt_path=" in w for w in words) else limit
        for limit in LIMITS
    ]
    if any(word.startswith("hparams_search=") for word in words):
        limits.append("hydra.sweeper.n_trials=2")
    return words + limits


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new user's directory, with the files the README supposes they have: a few photos and a text."""
    cwd = tmp_path_factory.mktemp("new_user")
    (cwd / "photos").mkdir()
    digits = load_digits()
    for name, index in (("zero", 0), ("three", 3)):
        pixels = (digits.images[index] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels).resize((64, 64)).save(cwd / "photos" / f"{name}.png")
    (cwd / "input.txt").write_text("The README keeps itself true, one command at a time.\n" * 2000)
    return cwd


def _check_composes(words: list[str], script: str, tmp_path: Path) -> None:
    config_name = HYDRA_SCRIPTS.get(script)
    if config_name is None:
        return
    args = [word.split(",")[0] if "-m" in words else word for word in words if not word.startswith("-")]
    check_overrides(args, config_name)
    compose_config(config_name, tmp_path, [arg for arg in args if not arg.startswith("hydra.")])


def _params() -> list:
    """``documented_commands()``, those that run a process marked slow."""
    params = []
    for command in documented_commands():
        marks = [] if command.needs or command.text.startswith(NOT_RUN) else [pytest.mark.slow]
        params.append(pytest.param(command, id=command.where, marks=marks))
    return params


@pytest.mark.parametrize("command", _params())
def test_documented_command(command: Command, user_dir: Path, tmp_path: Path) -> None:
    words = shlex.split(command.text)
    if command.text.startswith(NOT_RUN):
        pytest.skip("an install step or the test suite itself: CI runs the README's line (test_default_run.py)")
    if words[0] == "tensorboard":
        assert (user_dir / substitute(words[words.index("--logdir") + 1], user_dir)).is_dir()
        return
    assert words[:2] in (["python", words[1]], ["bash", words[1]]) and words[1].startswith("scripts/"), command
    script = words[1].removeprefix("scripts/")
    if command.needs:
        _check_composes(shlex.split(re.sub(r"<[^>]*>", "placeholder", command.text))[2:], script, tmp_path)
        pytest.skip(command.needs)
    args = shlex.split(substitute(command.text, user_dir))[2:]
    if command.error:  # the error line ends stderr, without a traceback
        result = run_script(script, *args, cwd=user_dir)
        assert result.returncode == 2, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        expected = command.error.removesuffix("...")
        line = result.stderr.strip().splitlines()[-1]
        assert line == expected if expected == command.error else line.startswith(expected), result.stderr[-3000:]
        return
    if script == "train.py":
        args = with_limits(args)
    result = run_script(script, *args, cwd=user_dir, timeout=600)
    assert result.returncode == 0, f"{command.text}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    copy = re.search(r"copy its best checkpoint to (\S+)", command.comment)
    if copy:
        shutil.copy(_newest_best(user_dir, None), user_dir / copy.group(1))
