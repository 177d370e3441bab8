"""Resuming a training run from a checkpoint: ``python scripts/train.py ckpt_path=<file>|last``.

A resumed run writes into its own new run directory; the earlier run's files are read, never written. Lightning
restores the weights, the optimizer and scheduler states, the loops' progress (epoch, global step, the training
order of the data) and the callbacks' states (EMA, checkpointing); ``RandomState`` adds the global random states,
which Lightning's checkpoints leave out, so that shuffling, augmentation and dropout go on as in an uninterrupted
run. Everything is read with ``torch.load(weights_only=True)``: tensors and plain data, never code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from training.config import UserError

LAST = "last"
LAST_CHECKPOINT = "last.ckpt"
# What a resumed run must share with the checkpoint's run, since it is restored from the checkpoint (weights,
# optimizer and scheduler states, the EMA) or decides what that state means (module, regulariser, fine-tuning, the
# data set). The trainer (max_epochs, to train longer), the data loading, loggers and other callbacks may differ.
RESUMED_KEYS = (
    "model",
    "module",
    "optimizer",
    "scheduler",
    "regularizer",
    "finetune",
    "callbacks.ema",
    "data._target_",
)
IGNORED = ("model.pretrained",)  # the checkpoint's weights replace them
# What decides the rest of an epoch that a checkpoint from its middle goes on with: the restored position in the
# training order counts examples, so another batch size would make the rest of that epoch one odd step.
MID_EPOCH_KEYS = ("data.batch_size",)


def _epochs(checkpoint: dict[str, Any]) -> tuple[int, bool]:
    """The whole epochs a training checkpoint has trained, and whether it was saved in the middle of an epoch (as
    Lightning's fit loop tells on a restart)."""
    total = checkpoint["loops"].get("fit_loop", {}).get("epoch_progress", {}).get("total", {})
    started, processed = total.get("started", 0), total.get("processed", 0)
    return processed, started == total.get("ready", 0) and processed == started - 1


def random_states() -> dict[str, Any]:
    """The global random states of torch (CPU and CUDA), numpy and Python, as tensors and plain numbers, so that
    ``torch.load(weights_only=True)`` reads them (numpy's own state holds an array, which it refuses)."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "torch.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": version, "state": torch.tensor(python_state, dtype=torch.int64), "gauss": gauss},
    }


def set_random_states(states: dict[str, Any]) -> None:
    """Set the global random states to ``states`` (from ``random_states``)."""
    torch.set_rng_state(states["torch"])
    if states["torch.cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch.cuda"])
    numpy = states["numpy"]
    np.random.set_state(
        ("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"],
         numpy["cached_gaussian"])
    )  # fmt: skip
    python = states["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss"]))


class RandomState(pl.Callback):
    """Keeps the global random states in every checkpoint and restores them when training resumes from one.

    They are saved as they are when the checkpoint is written and set again in ``on_fit_start``, the last hook
    before the training loop builds its data loader iterator (the sanity check between keeps the random states as
    it finds them): the random numbers drawn from then on (the shuffling of a loader without a generator of its own,
    augmentation, dropout) are those an uninterrupted run draws after the checkpoint. In a distributed run each
    process gets the states of process 0, which writes the checkpoint (seeded alike, they draw alike).
    """

    def __init__(self) -> None:
        self._restored: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return random_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._restored:
            set_random_states(self._restored)
        self._restored = None


def first_difference(run_config: dict[str, Any], current: dict[str, Any]) -> tuple[str, Any, Any] | None:
    """The first setting of ``RESUMED_KEYS`` whose value differs between a checkpoint's run config and this run's
    (plain configs), as (dotted key, the checkpoint's value, this run's); None when it can be resumed."""
    for key in RESUMED_KEYS:
        differences = _differences(_select(run_config, key), _select(current, key), key)
        if differences:
            return differences[0]
    return None


def _run_config(checkpoint: Path) -> dict[str, Any] | None:
    """The resolved config.yaml of the run that wrote ``<run>/checkpoints/last.ckpt`` (None if unreadable)."""
    try:
        config = yaml.safe_load((checkpoint.parents[1] / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def find_last_checkpoint(runs_dir: Path, cfg: DictConfig, exclude: Path | None = None) -> Path:
    """The most recently written ``checkpoints/last.ckpt`` of the run directories in ``runs_dir`` (``exclude``,
    the new run's own directory, left out) whose run trained what ``cfg`` trains (its config.yaml agrees on
    ``RESUMED_KEYS``: a fine-tuning run's checkpoint is not the one to resume a plain run with); ``UserError`` when
    there is none, naming the newest run and what differs."""
    candidates = sorted(
        (
            path
            for path in runs_dir.glob(f"*/checkpoints/{LAST_CHECKPOINT}")
            if path.is_file() and (exclude is None or path.parents[1].resolve() != exclude.resolve())
        ),
        key=lambda path: path.stat().st_mtime_ns,
        reverse=True,
    )
    if not candidates:
        raise UserError(f"ckpt_path=last: no earlier run with a last checkpoint under {runs_dir}")
    current = OmegaConf.to_container(cfg, resolve=True)
    differences = []
    for path in candidates:
        config = _run_config(path)
        difference = first_difference(config, current) if config is not None else None
        if difference is None:  # resumable, or a run without a readable config.yaml (checked when it is loaded)
            return path
        differences.append(difference)
    newest, (name, was, now) = candidates[0], differences[0]
    raise UserError(
        f"ckpt_path=last: none of the {len(candidates)} runs with a last checkpoint under {runs_dir} trained what "
        f"this run trains; the newest, {newest.parents[1].name}, has {name}={was!r} where this run has {now!r}. "
        "Give ckpt_path=<its checkpoint> with its settings, or the settings of the run to resume"
    )


def resume_path(cfg: DictConfig) -> Path | None:
    """The checkpoint that ``cfg.ckpt_path`` names (None: a fresh run); ``last`` is the newest ``last.ckpt`` of the
    runs of the same ``task_name`` (an experiment sets its own) under ``paths.log_dir`` that trained the same
    model, data and training settings (``find_last_checkpoint``), named in one line."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None:
        return None
    if str(ckpt_path) == LAST:
        runs_dir = Path(cfg.paths.log_dir) / cfg.task_name / "runs"
        path = find_last_checkpoint(runs_dir, cfg, Path(cfg.paths.output_dir))
        print(
            f"ckpt_path=last: resuming {path}, the newest run of {cfg.task_name!r} that trained the same model, data "
            "and training settings"
        )
        return path
    return Path(str(ckpt_path))


def _select(config: Any, key: str) -> Any:
    for name in key.split("."):
        config = config.get(name) if isinstance(config, dict) else None
    return config


def _differences(saved: Any, current: Any, key: str) -> list[tuple[str, Any, Any]]:
    """The dotted keys under ``key`` whose values differ between two plain configs, with both values (missing:
    None), ``IGNORED`` left out."""
    if key in IGNORED:
        return []
    if isinstance(saved, dict) and isinstance(current, dict):
        return [
            difference
            for name in dict.fromkeys([*saved, *current])
            for difference in _differences(saved.get(name), current.get(name), f"{key}.{name}")
        ]
    return [] if saved == current else [(key, saved, current)]


def check_resumable(cfg: DictConfig, path: Path, checkpoint: dict[str, Any]) -> None:
    """Raise ``UserError`` when ``checkpoint`` (read from ``path``) cannot be resumed with ``cfg``: it holds weights
    but no training state, or its run had another model, module, optimizer, scheduler, regulariser, fine-tuning,
    EMA or data set; or it was saved in the middle of an epoch and the batch size differs; or the trainer's limits
    leave nothing to train; or ``lr_find`` is on, whose learning rate the restored optimizer state would override."""
    if cfg.get("lr_find"):
        raise UserError("lr_find=true cannot resume a run (ckpt_path): the optimizer's restored state sets the lr")
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        raise UserError(
            f"ckpt_path: {path} holds weights but no training state to resume (optimizer, loops); start a new run "
            f"from its weights with model.pretrained={path}"
        )
    run_config, current = checkpoint["hyper_parameters"]["run_config"], OmegaConf.to_container(cfg, resolve=True)
    difference = first_difference(run_config, current)
    if difference:
        name, was, now = difference
        hint = (
            "" if name.startswith("model.") else f"; or start a new run from its weights with model.pretrained={path}"
        )
        raise UserError(
            f"ckpt_path: {path} was trained with {name}={was!r}, this run has {name}={now!r}; resume with the "
            f"settings of the checkpoint's run (its config.yaml){hint}"
        )
    epochs, mid_epoch = _epochs(checkpoint)
    for key in MID_EPOCH_KEYS if mid_epoch else ():
        was, now = _select(run_config, key), _select(current, key)
        if was != now:
            raise UserError(
                f"ckpt_path: {path} was saved in the middle of epoch {epochs} with {key}={was!r}, this run has "
                f"{key}={now!r}; resume with {key}={was!r} (a checkpoint from the end of an epoch may change it)"
            )
    trainer, step = cfg.get("trainer") or {}, checkpoint.get("global_step")
    max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps")
    if isinstance(max_epochs, int) and max_epochs != -1 and epochs >= max_epochs:
        raise UserError(
            f"ckpt_path: {path} has trained {epochs} epoch{'s' if epochs != 1 else ''}, and trainer.max_epochs="
            f"{max_epochs} leaves nothing to train; give a trainer.max_epochs above {epochs}"
        )
    if isinstance(max_steps, int) and max_steps != -1 and isinstance(step, int) and step >= max_steps:
        raise UserError(
            f"ckpt_path: {path} has trained {step} steps, and trainer.max_steps={max_steps} leaves nothing to "
            f"train; give a trainer.max_steps above {step}"
        )
