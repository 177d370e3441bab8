"""The command-line front of the scripts: Hydra apps whose user mistakes end in one line and exit 2."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException, OverrideParseException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from data.imagefolder import UnreadableImageError
from models import did_you_mean
from training.config import CONFIG_DIR, UserError, check_settings, require_extra
from training.console import quiet_lightning_log
from training.guards import TrainingDiverged
from training.interrupt import Interrupted, resume_command, stop_on_signals
from training.sweeps import check_multirun_strategy, metric_value

# Errors a user causes that surface while training runs, not while it is set up: one line each too.
RUN_ERRORS = (UserError, UnreadableImageError, TrainingDiverged)


def _override_values(override: Override) -> list[str]:
    if not override.is_sweep_override():
        return [override.get_value_element_as_str()]
    try:
        return list(override.sweep_string_iterator())
    except Exception:  # glob() and interval sweeps: Hydra checks them itself
        return []


def _unknown(what: str, value: str, accepted: Sequence[str]) -> UserError:
    hint = did_you_mean(value, list(accepted))
    return UserError(f"unknown {what} {value!r}; {hint}accepted: {', '.join(accepted)}")


def check_option(group: str, value: str, config_dir: Path = CONFIG_DIR) -> None:
    """Raise ``UserError`` when ``value`` is not an option (a file of ``configs/<group>/``) of the config group."""
    options = sorted(path.stem for path in (config_dir / group).glob("*.yaml"))
    if value not in options:
        raise _unknown(group, value, options)


def _unknown_setting(key: str, node: DictConfig, config_dir: Path) -> UserError:
    """The error for ``key``, which the composed config's ``node`` (its parent) does not have."""
    parent, _, leaf = key.rpartition(".")
    settings = [str(k) for k in node.keys() if parent or k != "hydra"]  # noqa: SIM118 (`in node` is False for ???)
    if not settings and parent and (config_dir / parent).is_dir():  # an option without settings, e.g. none
        having = sorted(p.stem for p in (config_dir / parent).glob("*.yaml") if leaf in OmegaConf.load(p))
        if having:
            return UserError(
                f"{key} is a setting of {', '.join(f'{parent}={option}' for option in having)}, not of the "
                f"chosen {parent}; choose one of them first, e.g. {parent}={having[0]} {key}=..."
            )
    where = f"{parent} setting" if parent else "setting"
    return _unknown(where, leaf, [k for k in settings if not k.startswith("_")])


# What Hydra raises when it cannot compose the config from the command line
COMPOSITION_ERRORS = (ConfigCompositionException, OverrideParseException)


def composition_error(err: Exception, config_dir: Path = CONFIG_DIR) -> UserError:
    """Hydra's ``COMPOSITION_ERRORS`` as the project's one line: an override of a key that the config does not have
    (OmegaConf's struct mode refuses it; add new keys with ``+``) names the settings it has, with a "did you mean";
    any other, Hydra's own message."""
    cause = err.__cause__
    node = getattr(cause, "parent_node", None)
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and isinstance(node, DictConfig) and cause.full_key:
        return _unknown_setting(cause.full_key, node, config_dir)
    return UserError(" ".join(line.strip() for line in str(err).split("\n\n")[0].splitlines()))


# Hydra's command-line flags (``python scripts/train.py --help``) as its own parser reads them: its modes, and the
# flags that take a value, so that ``-cn`` is not read as ``-c n``
_FLAGS = argparse.ArgumentParser(add_help=False)
_FLAGS.add_argument("--run", "-r", action="store_true")
_FLAGS.add_argument("--multirun", "-m", action="store_true")
_FLAGS.add_argument("--cfg", "-c", choices=["job", "hydra", "all"])
_FLAGS.add_argument("--info", "-i", nargs="?", const="all")
_FLAGS.add_argument("--shell-completion", "-sc", action="store_true")
_FLAGS.add_argument("--package", "-p")
_FLAGS.add_argument("--config-path", "-cp")
_FLAGS.add_argument("--config-name", "-cn")
_FLAGS.add_argument("--config-dir", "-cd")
_FLAGS.add_argument("--experimental-rerun")


def _words(args: Sequence[str]) -> list[str]:
    """The overrides of a command line: what Hydra's flags and their values leave."""
    return [arg for arg in _FLAGS.parse_known_args(list(args))[1] if not arg.startswith("-")]


def _parse(args: Sequence[str]) -> list[Override]:
    """The overrides of a command line, parsed; none when Hydra's grammar cannot read them, which Hydra then reports
    when it composes."""
    try:
        return OverridesParser.create().parse_overrides(_words(args))
    except OverrideParseException:
        return []


def _check_modes(args: Sequence[str]) -> None:
    """Raise ``UserError`` when the command line asks Hydra for more than one of its modes (``-m`` with ``--cfg``,
    say), which Hydra refuses with a traceback."""
    parsed, _ = _FLAGS.parse_known_args(list(args))
    flags = {
        "--run": parsed.run, "--multirun": parsed.multirun, "--cfg": parsed.cfg is not None,
        "--info": parsed.info is not None, "--shell-completion": parsed.shell_completion,
    }  # fmt: skip
    given = [flag for flag, on in flags.items() if on]
    if len(given) > 1:
        raise UserError(
            f"{' and '.join(given)} cannot be used together; give one of {', '.join(flags)} (to print the config "
            "of a sweep's jobs, leave out --multirun/-m)"
        )


# Config groups whose options need a Hydra plugin from an optional extra of pyproject.toml: (package, extra)
PLUGINS = {"hparams_search": ("hydra-optuna-sweeper", "sweep"), "hydra/launcher": ("hydra-submitit-launcher", "sweep")}


def _plain(override: Override) -> bool:
    """Whether ``override`` sets a key or a choice of the project's config (not ``+``, ``++``, ``~`` or Hydra's)."""
    adds = override.is_delete() or override.is_add() or override.is_force_add()
    return not adds and not override.key_or_group.startswith("hydra")


def check_command_line(args: Sequence[str], config_dir: Path = CONFIG_DIR) -> None:
    """Raise ``UserError`` before Hydra composes or writes anything for two of Hydra's modes at once, an option
    that needs a plugin not installed, or a config-group choice that does not exist (``model=lenett5``; every value
    of a sweep). The keys are Hydra's to check, when it composes (``composition_error``)."""
    _check_modes(args)
    for override in _parse(args):
        key = override.key_or_group
        if key in PLUGINS and not override.is_delete() and override.value() is not None:
            package, extra = PLUGINS[key]
            require_extra(extra, [package], f"{key}={override.value()}")
        if not _plain(override) or not (config_dir / key).is_dir():
            continue
        for value in _override_values(override):
            if value != "null":
                check_option(key, value, config_dir)


def check_overrides(args: Sequence[str], config_name: str = "train", config_dir: Path = CONFIG_DIR) -> DictConfig:
    """``check_command_line``, then the config ``configs/<config_name>.yaml`` composed once with the command line's
    overrides (a sweep's with the first value of each list; Hydra's own left out), its errors as a run reports them
    (``composition_error``): what a command line would run, without running it. A run leaves the composition to
    ``hydra.main``; a multirun checks its first job here, as Hydra writes the sweep's directory before it composes
    the jobs."""
    check_command_line(args, config_dir)
    words = _words(args)
    GlobalHydra.instance().clear()
    try:
        overrides = []
        for word, override in zip(words, OverridesParser.create().parse_overrides(words), strict=True):
            values = _override_values(override)
            if not override.key_or_group.startswith("hydra") and values:
                overrides.append(f"{word.partition('=')[0]}={values[0]}" if override.is_sweep_override() else word)
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
            return compose(config_name=config_name, overrides=overrides)
    except COMPOSITION_ERRORS as err:
        raise composition_error(err, config_dir) from None
    finally:
        GlobalHydra.instance().clear()


# The file that marks a directory as a run's own, made before anything else is written into it
CLAIM = ".claimed"
RECORDS = (CLAIM, ".hydra", "config.yaml", "metrics.json", "checkpoints", "multirun.yaml")


def _unwritable(directory: Path, key: str, error: OSError) -> UserError:
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    reason = f"{existing} is a file, not a directory" if not existing.is_dir() else os.strerror(error.errno or 0)
    where = f"{key} or paths.log_dir" if key.startswith("hydra.") else key
    return UserError(f"cannot write the run's directory {directory}: {reason}; choose another {where}")


def claim_directory(directory: Path, key: str, *, empty: bool = True) -> None:
    """Make ``directory`` (the setting ``key``) a run's own before anything is written into it: create it and,
    atomically (``O_CREAT | O_EXCL``), its claim file, so that of two runs started together one wins and the other
    is refused. Raise ``UserError`` for a directory another run has claimed, one that holds any file when ``empty``
    (an earlier run's records, say), or one that cannot be written; the loser writes nothing into it."""
    claim = directory / CLAIM
    try:
        directory.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError as err:
        if str(err.filename) != str(claim):  # a file where the directory should be
            raise _unwritable(directory, key, err) from None
        claimed = True
    except OSError as err:
        raise _unwritable(directory, key, err) from None
    else:
        with open(descriptor, "w") as file:
            file.write(f"pid {os.getpid()}: {shlex.join(sys.argv)}\n")
        claimed = False
    names = sorted(path.name for path in directory.iterdir() if path.name != CLAIM) if claimed or empty else []
    if not claimed and not names:
        return
    if not claimed:
        claim.unlink()
    what = "a run" if claimed or set(names) & set(RECORDS) else "files"
    shown = ", ".join(names[:4]) + (", …" if len(names) > 4 else "") if names else "started just now"
    instead = "the run's own directory" if key == "paths.output_dir" else "a fresh timestamped one"
    raise UserError(
        f"{key}={directory} already holds {what} ({shown}); nothing was changed. Choose a new directory, or leave "
        f"{key} out for {instead}"
    )


class ClaimDirectories(Callback):
    """Hydra callback (``configs/hydra/default.yaml``): a run claims the directories it writes into
    (``claim_directory``) before Hydra writes anything there: a run's ``hydra.run.dir``, a multirun's
    ``hydra.sweep.dir`` (before ``multirun.yaml``) and each of its jobs' directories, and ``paths.output_dir`` where it
    is set to another directory. A refusal ends the process in one line (exit 2)."""

    @staticmethod
    def _claim(directory: Any, key: str, *, empty: bool = True) -> None:
        if int(os.environ.get("LOCAL_RANK", 0)) != 0:
            return  # the other processes of a distributed run work in the first one's directory
        try:
            claim_directory(Path(str(directory)), key, empty=empty)
        except UserError as err:
            _exit_with(err)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(config.hydra.sweep.dir, "hydra.sweep.dir")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        job_dir = Path(config.hydra.runtime.output_dir)
        if config.hydra.mode == RunMode.MULTIRUN:  # in the sweep's directory; Hydra has written the job's .hydra/
            self._claim(job_dir, "hydra.sweep.subdir", empty=False)
        output_dir = OmegaConf.select(config, "paths.output_dir")
        if output_dir is not None and Path(str(output_dir)).resolve() != job_dir.resolve():
            self._claim(output_dir, "paths.output_dir")


def _exit_with(err: Exception) -> None:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)


def parse_int_options(args: list[str], defaults: dict[str, int]) -> dict[str, int]:
    """``key=value`` arguments of a benchmark script: positive integers for the keys of ``defaults``."""
    options = dict(defaults)
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key not in defaults or not value.isdigit() or int(value) < 1:
            raise ValueError(f"expected key=positive integer with key in {', '.join(defaults)}, got {arg!r}")
        options[key] = int(value)
    return options


def parse_key_values(args: Sequence[str], defaults: dict[str, str]) -> dict[str, str]:
    """``key=value`` arguments of a plain script over ``defaults``; an unknown key raises ``UserError`` naming them."""
    options = dict(defaults)
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key not in defaults:
            raise UserError(f"unknown argument {arg!r}; accepted: {', '.join(f'{name}=' for name in defaults)}")
        options[key] = value
    return options


def run_plain(main: Callable[[list[str]], None], *user_errors: type[Exception]) -> None:
    """Run a script that takes ``key=value`` arguments (not a Hydra app): ``UserError`` and ``user_errors``
    raised by ``main`` end in one ``error:`` line and exit 2."""
    try:
        main(sys.argv[1:])
    except (UserError, *user_errors) as err:
        _exit_with(err)


def _in_sweep() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run(task: Callable[[DictConfig], Any], config_name: str) -> None:
    """Run ``task`` as the Hydra app ``configs/<config_name>.yaml`` with the command line's overrides. A signal
    (SIGTERM, SIGINT) stops it in one line, wherever it is, with a non-zero exit status (training/interrupt.py)."""
    # An upstream deprecation inside Lightning 2.6 that users can do nothing about.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    quiet_lightning_log()
    argv = list(sys.argv)
    with stop_on_signals():
        try:
            _run(task, config_name)
        except Interrupted as stop:  # not an error, but the run did not finish
            resume = f"; resume with: {resume_command(stop.checkpoint, argv)}" if stop.checkpoint else ""
            print(f"{stop}{resume}", file=sys.stderr)
            sys.exit(stop.code)


@contextlib.contextmanager
def _hydra_raises() -> Iterator[None]:
    """Within it, ``hydra.main`` raises its errors instead of printing them (Hydra's documented switch
    ``HYDRA_FULL_ERROR=1``), so that those of its composition end in one line (``composition_error``)."""
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except COMPOSITION_ERRORS as err:
        _exit_with(composition_error(err))
    finally:
        if previous is None:
            del os.environ["HYDRA_FULL_ERROR"]
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


def _run(task: Callable[[DictConfig], Any], config_name: str) -> None:
    # Lightning's DDP launcher starts the other processes of a run (LOCAL_RANK 1, 2, ...) with this command and
    # the run's own directory, checked already by the first process
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        try:
            if _FLAGS.parse_known_args(sys.argv[1:])[0].multirun:
                check_overrides(sys.argv[1:], config_name)
            else:
                check_command_line(sys.argv[1:])
        except UserError as err:
            _exit_with(err)

    @hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")
    def app(cfg: DictConfig) -> Any:
        try:
            check_settings(cfg, OmegaConf.load(CONFIG_DIR / f"{config_name}.yaml"))
            if _in_sweep() and cfg.get("trainer"):
                check_multirun_strategy(cfg.trainer, str(HydraConfig.get().launcher.get("_target_", "")))
            result = task(cfg)
            metric = cfg.get("optimized_metric")
            return metric_value(result, metric) if metric else result  # what a sweeper optimises
        except RUN_ERRORS as err:
            if isinstance(err, TrainingDiverged) and _in_sweep():
                print(f"error: {err}", file=sys.stderr)  # this trial only: the sweep goes on
                return None  # the Optuna sweeper records a failed trial
            _exit_with(err)

    with _hydra_raises():  # hydra.main composes the run's config: the one composition
        app()
