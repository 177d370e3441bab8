"""Generated bad command lines (hypothesis) at the four scripts: each must end in exit status 2 with exactly one
``error:`` line, no traceback, and no file written outside the run's own directory.

The bad inputs are drawn per script from what the project must refuse: unknown options of every config group,
unknown keys in every group's node, values of the wrong type for the settings of the default config, values out of
their range (non-finite numbers, zero or negative counts, fractions outside [0, 1]), and paths that do not exist,
are folders, or are not checkpoints. The scripts run in this process through their own entry point,
``training.cli.run`` (as tests/test_bad_inputs.py does), each in a fresh directory with ``hydra.run.dir`` and
``paths.log_dir`` inside it; the repository and the other directories are compared before and after. Hypothesis is
derandomized (the same examples on every run) and keeps no example database.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# hypothesis keeps its files (a cache of the tested code's constants) in .hypothesis/ of the working directory, the
# repository, unless told otherwise before its first use
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "classicnets-hypothesis"))

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig

from conftest import CONFIG_DIR, ROOT, compose_config
from training.cli import run
from training.export import export
from training.gradcheck import gradcheck
from training.inference import predict
from training.tasks import evaluate, train
from training.visualize import visualize

SCRIPTS: dict[str, tuple[Callable[[DictConfig], Any], str]] = {
    "train.py": (train, "train"),
    "eval.py": (evaluate, "eval"),
    "predict.py": (predict, "predict"),
    "export.py": (export, "export"),
    "gradcheck.py": (gradcheck, "gradcheck"),
    "visualize.py": (visualize, "visualize"),
}
FAST = ["trainer.accelerator=cpu", "callbacks.progress_bar=null", "callbacks.model_summary=null"]
QUICK = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=2", "test=false"]
SKIPPED = {".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}
# What Hydra's override grammar reads as a string (not a number, bool or null) and no option or key is called.
WORDS = st.text("qxzjkvw", min_size=2, max_size=6)
SUFFIXES = st.text("qxzjk_0", min_size=1, max_size=3)


def files_under(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (caches and the virtual environment left out) with its size and modification time."""
    found = {}
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = [name for name in subdirectories if name not in SKIPPED]
        for name in names:
            path = Path(directory) / name
            with contextlib.suppress(FileNotFoundError):
                stat = path.lstat()
                found[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return found


def run_script(script: str, args: list[str], cwd: Path) -> tuple[int | None, str]:
    """``scripts/<script> args`` through the scripts' entry point, from ``cwd``: the exit status and stderr."""
    task, config_name = SCRIPTS[script]
    stderr, stdout = io.StringIO(), io.StringIO()
    previous, argv = Path.cwd(), sys.argv
    os.chdir(cwd)
    sys.argv = [f"scripts/{script}", *args]
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            run(task, config_name)
        code: int | None = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = argv
        os.chdir(previous)
        GlobalHydra.instance().clear()
    return code, stderr.getvalue()


# --- what the project must refuse, per script ------------------------------------------------------------------


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


GROUPS = sorted(path.name for path in CONFIG_DIR.iterdir() if path.is_dir() and path.name != "hydra")


def unknown_option(groups: list[str]) -> st.SearchStrategy[list[str]]:
    """``group=<an option with a typo>`` for a config group."""

    def typo(group: str) -> st.SearchStrategy[list[str]]:
        known = options(group)
        return (
            st.tuples(st.sampled_from(known), SUFFIXES)
            .map(lambda pair: pair[0] + pair[1])
            .filter(lambda option: option not in known)
            .map(lambda option: [f"{group}={option}"])
        )

    return st.sampled_from(groups).flatmap(typo)


def composed(config_name: str) -> DictConfig:
    """A script's config as its command line without overrides composes it (Hydra's own settings left out)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            return compose(config_name=config_name)
    finally:
        GlobalHydra.instance().clear()


def node_settings(cfg: DictConfig) -> dict[str, list[str]]:
    """The keys of each config node of ``cfg`` (``""``: the top level), as an override names them."""
    nodes: dict[str, list[str]] = {}

    def visit(node: DictConfig, key: str) -> None:
        nodes[key] = [str(name) for name in node.keys()]  # noqa: SIM118 (a ??? value is not `in` a node)
        for name in node.keys():  # noqa: SIM118
            child = node._get_node(name)
            if isinstance(child, DictConfig) and name != "hydra":
                visit(child, f"{key}.{name}" if key else str(name))

    visit(cfg, "")
    return nodes


def unknown_key(nodes: dict[str, list[str]]) -> st.SearchStrategy[list[str]]:
    """``node.<a key with a typo>=1`` for any node of the config, the top level included."""

    def typo(node: str) -> st.SearchStrategy[list[str]]:
        known = nodes[node]
        prefix = f"{node}." if node else ""
        return (
            st.tuples(st.sampled_from(known or ["setting"]), SUFFIXES)
            .map(lambda pair: pair[0] + pair[1])
            .filter(lambda key: key not in known)
            .map(lambda key: [f"{prefix}{key}=1"])
        )

    return st.sampled_from(sorted(nodes)).flatmap(typo)


def typed_leaves(cfg: DictConfig) -> list[tuple[str, type]]:
    """The int, float and bool settings of the objects that ``cfg`` builds (nodes with a ``_target_``)."""
    leaves = []

    def visit(node: DictConfig, key: str) -> None:
        for name, value in node.items():  # a node with a _target_ has no ??? value
            path = f"{key}.{name}"
            if isinstance(value, DictConfig):
                visit(value, path)
            elif "_target_" in node and not str(name).startswith("_") and isinstance(value, bool | int | float):
                leaves.append((path, type(value)))

    for name in cfg.keys():  # noqa: SIM118 (a ??? value is not `in` a node)
        value = cfg._get_node(name)
        if isinstance(value, DictConfig) and name not in ("hydra", "paths"):
            visit(value, str(name))
    return leaves


def wrong_type(leaves: list[tuple[str, type]]) -> st.SearchStrategy[list[str]]:
    """A value that is not of a setting's type: a word or a list for a number, a fraction for a count, a word or a
    number for a switch."""

    def bad(leaf: tuple[str, type]) -> st.SearchStrategy[list[str]]:
        key, kind = leaf
        values = {
            bool: st.one_of(WORDS, st.sampled_from(["2", "0.5", "[true]"])),
            int: st.one_of(WORDS, st.sampled_from(["2.5", "[1,2]", "{a:1}"])),
            float: st.one_of(WORDS, st.sampled_from(["[0.1]", "{a:1}"])),
        }[kind]
        return values.map(lambda value: [f"{key}={value}"])

    return st.sampled_from(leaves).flatmap(bad)


# settings and values out of their range (each needs no file); counts of 0 or less, non-finite numbers, fractions
# outside [0, 1]
OUT_OF_RANGE = {
    "optimizer.lr": ["-1", "nan", "inf", "-inf", "1e999"],
    "optimizer.momentum": ["-0.5", "nan", "inf"],
    "optimizer.weight_decay": ["-1e-4", "nan", "inf"],
    "data.batch_size": ["0", "-3"],
    "data.val_fraction": ["-0.1", "1.5", "nan"],
    "data.test_fraction": ["-0.2", "1.0", "nan"],
    "data.image_size": ["0", "-8"],
    "model.num_classes": ["0", "-1"],
    "module.label_smoothing": ["-0.1", "1.5", "nan", "inf"],
    "module.aux_loss_weight": ["nan", "-inf"],
    "scheduler.gamma": ["nan", "inf"],
    "scheduler.step_size": ["0", "-2"],
    "scheduler.warmup": ["-1"],
    "seed": ["-1", "4294967296"],
    "trainer.max_epochs": ["0", "-2"],
    "trainer.min_epochs": ["-1"],
    "trainer.check_val_every_n_epoch": ["0", "-1"],
    "trainer.log_every_n_steps": ["0", "-5"],
    "trainer.num_nodes": ["0"],
    "trainer.gradient_clip_val": ["nan", "inf", "-1"],
    "+trainer.max_steps": ["0", "-2"],
    "+trainer.limit_train_batches": ["0", "0.0", "-1", "1.5"],
    "+trainer.accumulate_grad_batches": ["0", "-1"],
    "callbacks.model_checkpoint.save_top_k": ["-2"],
    "callbacks.model_checkpoint.monitor": ["val/los", "val/accuracy", "loss"],
    "callbacks.model_checkpoint.mode": ["maxi", "minimum"],
    "callbacks.model_checkpoint.last_every_n_train_steps": ["-1"],
    "callbacks.initial_loss_check.low": ["nan", "1.5"],
    "callbacks.initial_loss_check.high": ["inf", "0.5"],
    "callbacks.layer_stats.every_n_steps": ["0", "-1"],
    "callbacks.confusion_matrix.every_n_epochs": ["0"],
    "callbacks.misclassified.max_images": ["-1"],
}


def out_of_range(table: dict[str, list[str]]) -> st.SearchStrategy[list[str]]:
    return st.sampled_from([[f"{key}={value}"] for key, values in table.items() for value in values])


def bad_paths(script: str, files: dict[str, Path]) -> st.SearchStrategy[list[str]]:
    """Paths that are missing, are folders, are files where a folder must be, or are not what they should hold."""
    missing, folder, text = files["missing"], files["folder"], files["text"]
    checkpoint_keys = {"train.py": ["ckpt_path", "model.pretrained"]}.get(script, ["ckpt_path"])
    lines = [[f"{key}={path}"] for key in checkpoint_keys for path in (missing, folder, text)]
    if script == "train.py":
        lines += [
            ["data=mnist", f"data.data_dir={missing}"],
            ["data=imagefolder", f"data.data_dir={missing}"],
            ["data=imagefolder", f"data.data_dir={text}"],
            ["data=text", f"data.path={missing}"],
            ["data=text", f"data.path={folder}"],
            [f"paths.log_dir={text}/logs"],
            [f"hydra.run.dir={text}/run"],
        ]
    if script == "predict.py":
        lines += [[f"ckpt_path={files['checkpoint']}", f"inputs={path}"] for path in (missing, folder)]
        lines += [[f"ckpt_path={path}", f"inputs={files['image']}"] for path in (missing, folder, text)]
    if script == "visualize.py":
        lines += [[f"inputs={path}"] for path in (missing, folder)] + [[f"out={text}"], [f"out={text}/pictures"]]
    if script == "export.py":
        lines += [
            [f"ckpt_path={files['checkpoint']}", "format=onnx", f"out={path}/model.onnx"] for path in (missing, text)
        ]
        lines += [
            [f"ckpt_path={path}", "format=state_dict", f"out={folder}/model.pt"] for path in (missing, folder, text)
        ]
    return st.sampled_from(lines)


# --- the property ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The files that the bad command lines name: a lenet5 checkpoint, an image, a text file, a folder, a missing
    path; the examples' own directories go under ``root``."""
    from PIL import Image

    root = tmp_path_factory.mktemp("bad_command_lines")
    train(compose_config("train", root / "trained", [*FAST, *QUICK]))
    GlobalHydra.instance().clear()
    (root / "folder").mkdir()
    (root / "exports").mkdir()
    (root / "text.txt").write_text("not a checkpoint, an image or a folder\n")
    Image.new("L", (8, 8)).save(root / "digit.png")
    return {
        "root": root,
        "checkpoint": root / "trained" / "checkpoints" / "last.ckpt",
        "image": root / "digit.png",
        "text": root / "text.txt",
        "folder": root / "folder",
        "missing": root / "missing" / "nothing.ckpt",
    }


EXAMPLE = itertools.count()


@contextlib.contextmanager
def one_example(root: Path) -> Iterator[tuple[Path, Path]]:
    """A fresh working directory and run directory; asserts that nothing changed elsewhere in ``root`` or in the
    repository."""
    directory = root / f"example{next(EXAMPLE)}"
    cwd, run_dir = directory / "cwd", directory / "run"
    cwd.mkdir(parents=True)
    before = {**files_under(ROOT), **files_under(root)}
    yield cwd, run_dir
    after = {**files_under(ROOT), **files_under(root)}
    changed = sorted(
        path
        for path in before.keys() ^ after.keys() | {p for p in before if before[p] != after.get(p, before[p])}
        if not Path(path).is_relative_to(run_dir)
    )
    assert not changed, f"written outside the run's directory {run_dir}: {changed}"


def related(first: str, second: str) -> bool:
    """Whether one of two dotted keys is the other or lies under it."""
    return first == second or first.startswith(f"{second}.") or second.startswith(f"{first}.")


def assert_refused(script: str, args: list[str], root: Path) -> None:
    with one_example(root) as (cwd, run_dir):
        writes_no_run = script in ("export.py", "gradcheck.py")
        fixed = [] if writes_no_run else [f"hydra.run.dir={run_dir}", f"paths.log_dir={cwd.parent / 'logs'}"]
        if any(arg.startswith(("hydra.run.dir=", "paths.log_dir=")) for arg in args):
            fixed = []  # the line's own directory is the bad input
        # the harness's speed-ups, but not those of a key that the line sets (a user would not set both)
        named = [arg.partition("=")[0].lstrip("+") for arg in args]
        extra = [
            fast
            for fast in (FAST if script == "train.py" else [])
            if not any(related(fast.partition("=")[0], key) for key in named)
        ]
        code, stderr = run_script(script, [*extra, *args, *fixed], cwd)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in stderr, f"{script} {args}:\n{stderr}"
    assert code == 2 and len(errors) == 1, f"{script} {args}: exit {code}\n{stderr}"


COMMON = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def train_lines(files: dict[str, Path]) -> st.SearchStrategy[list[str]]:
    cfg = composed("train")
    return st.one_of(
        unknown_option(GROUPS),
        unknown_key(node_settings(cfg)),
        wrong_type(typed_leaves(cfg)),
        out_of_range(OUT_OF_RANGE),
        bad_paths("train.py", files),
    )


@settings(COMMON, max_examples=60)
@given(data=st.data())
def test_train_refuses_a_bad_command_line_in_one_line(files: dict[str, Path], data: st.DataObject) -> None:
    assert_refused("train.py", data.draw(train_lines(files)), files["root"])


def checkpoint_lines(script: str, files: dict[str, Path]) -> st.SearchStrategy[list[str]]:
    """Bad command lines of the scripts that take a checkpoint: a required setting left out, or the settings that
    make a good command line with one of them, or one more, bad."""
    good = {
        "eval.py": [f"ckpt_path={files['checkpoint']}"],
        "predict.py": [f"ckpt_path={files['checkpoint']}", f"inputs={files['image']}"],
        "export.py": [f"ckpt_path={files['checkpoint']}", "format=state_dict", f"out={files['root']}/exports/net.pt"],
        "visualize.py": [f"ckpt_path={files['checkpoint']}", "method=saliency", "count=2"],
    }[script]
    required = {
        "eval.py": ["ckpt_path"],
        "predict.py": ["ckpt_path", "inputs"],
        "export.py": ["ckpt_path", "format"],
        "visualize.py": ["ckpt_path", "method"],
    }
    table = {
        "eval.py": {"+data.batch_size": ["0", "-1"], "+data.num_workers": ["-1", "qx"]},
        "predict.py": {"top_k": ["0", "-1", "qx", "2.5"], "batch_size": ["0", "qx", "[1]"], "device": ["qx", "cuda:x"]},
        "export.py": {"format": ["onnxx", "pickle", "1", "[onnx]"], "overwrite": ["qx", "2", "[true]"]},
        "visualize.py": {
            "method": ["salency", "1", "[saliency]"],
            "count": ["0", "-1", "qx"],
            "target": ["qx", "1"],
            "layer": ["qx", "features.c9"],
            "unit": ["-1", "qx"],
            "steps": ["0", "2.5"],
        },
    }[script]
    cfg = composed(script.removesuffix(".py"))

    def complete(line: list[str]) -> list[str]:
        named = {arg.partition("=")[0].lstrip("+") for arg in line}
        return [*(arg for arg in good if arg.partition("=")[0] not in named), *line]

    left_out = [[arg for arg in good if not arg.startswith(f"{key}=")] for key in required[script]]
    bad = [out_of_range(table), unknown_key(node_settings(cfg)), bad_paths(script, files)]
    if script == "eval.py":
        bad += [wrong_type(typed_leaves(cfg)), unknown_option(["trainer"]), st.just(["ckpt_path=[]"])]
    return st.one_of(st.sampled_from(left_out), st.one_of(bad).map(complete))


def checkpoint_script_test(script: str, examples: int) -> Callable[..., None]:
    """The property for one of the scripts that take a checkpoint, with its number of examples."""

    @settings(COMMON, max_examples=examples)
    @given(data=st.data())
    def test(files: dict[str, Path], data: st.DataObject) -> None:
        assert_refused(script, data.draw(checkpoint_lines(script, files)), files["root"])

    return test


# 60 + 30 + 55 + 55 + 30 = 230 command lines; a training line costs about twice an export's (Hydra composes the
# larger config four times), an evaluation's a little more than a prediction's
test_eval_refuses_a_bad_command_line_in_one_line = checkpoint_script_test("eval.py", 30)
test_predict_refuses_a_bad_command_line_in_one_line = checkpoint_script_test("predict.py", 55)
test_export_refuses_a_bad_command_line_in_one_line = checkpoint_script_test("export.py", 55)
test_visualize_refuses_a_bad_command_line_in_one_line = checkpoint_script_test("visualize.py", 30)


def gradcheck_lines() -> st.SearchStrategy[list[str]]:
    """Bad command lines of the gradient check: its groups (the model and the switches that write into it), its
    nodes' keys, the model's settings, and its own settings out of range."""
    cfg = composed("gradcheck")
    table = {
        "eps": ["0", "-1e-6", "inf", "nan", "qx", "[1e-6]"],
        "batch_size": ["0", "-1", "2.5", "qx"],
        "seed": ["-1", "qx"],
        "data.num_classes": ["0", "-1", "qx"],
        "data.in_channels": ["0", "qx"],
    }
    return st.one_of(
        unknown_option(["model", "init", "activation", "norm"]),
        unknown_key(node_settings(cfg)),
        wrong_type(typed_leaves(cfg)),
        out_of_range(table),
    )


@settings(COMMON, max_examples=12)
@given(data=st.data())
def test_gradcheck_refuses_a_bad_command_line_in_one_line(files: dict[str, Path], data: st.DataObject) -> None:
    assert_refused("gradcheck.py", data.draw(gradcheck_lines()), files["root"])


# --- the bugs that the property found, and the warnings, one regular test each ----------------------------------


def test_export_refuses_a_switch_that_is_neither_true_nor_false(files: dict[str, Path]) -> None:
    """``overwrite=qx`` was taken as true (a non-empty string) and replaced the file."""
    out = files["root"] / "exports" / "switch.pt"
    args = [f"ckpt_path={files['checkpoint']}", "format=state_dict", f"out={out}", "overwrite=qx"]
    with one_example(files["root"]) as (cwd, _):
        code, stderr = run_script("export.py", args, cwd)
    assert (code, stderr.strip()) == (2, "error: overwrite: expected true or false, got 'qx'")


def test_a_learning_rate_of_zero_trains_with_one_warning_line(files: dict[str, Path]) -> None:
    """``optimizer.lr=0`` is allowed (the run goes on) but said in one line: no weight changes."""
    run_dir = files["root"] / "zero_lr"
    args = [*FAST, *QUICK, "optimizer.lr=0", f"hydra.run.dir={run_dir}"]
    code, stderr = run_script("train.py", args, files["root"])
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert code == 0 and warnings == [
        "warning: optimizer.lr=0: no weight will change, and the model stays as initialised (at chance); give a "
        "positive learning rate, or lr_find=true for a suggestion"
    ]
    assert "error:" not in stderr
