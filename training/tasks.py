"""The two jobs behind the scripts: ``train(cfg)`` and ``evaluate(cfg)``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger
from rich.console import Console
from torch import nn

from data.base import ClassificationDataModule
from models._pretrained import load_file
from training.config import UserError, instantiate

console = Console(soft_wrap=True)


def check_model_fits_data(net: nn.Module, datamodule: pl.LightningDataModule) -> None:
    """Run one dummy input through ``net`` so a size or output-count mismatch fails before training."""
    shape = datamodule.input_shape
    kind = "images" if len(shape) == 3 else "sequences"
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            # token sequences (a language model's data) declare ``input_dtype = torch.long``
            outputs = net(torch.zeros(1, *shape, dtype=getattr(datamodule, "input_dtype", torch.float32)))
    except Exception as err:
        raise UserError(f"the model cannot take the data's {'x'.join(map(str, shape))} {kind}: {err}") from err
    finally:
        net.train(was_training)
    if outputs.shape[-1] != datamodule.output_size:
        if isinstance(datamodule, ClassificationDataModule):
            needed = f"{datamodule.num_classes} classes; set model.num_classes={datamodule.num_classes}"
        else:
            needed = f"{datamodule.output_size} targets per example; set model.num_outputs={datamodule.output_size}"
        raise UserError(f"the model has {outputs.shape[-1]} outputs but the data has {needed}")


def _try(key: str, factory: Any, argument: Any) -> Any:
    try:
        return factory(argument)
    except (TypeError, ValueError) as err:
        raise UserError(f"{key}: {err}") from err


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """The DataModule and the LightningModule (with its network) that ``cfg`` describes."""
    datamodule = instantiate(cfg.data, "data")
    try:  # read the data now, so that missing or unreadable files are reported before anything else
        datamodule.prepare_data()
        datamodule.setup("fit")
    except (FileNotFoundError, ValueError) as err:
        raise UserError(f"data: {err}") from err
    net = instantiate(cfg.model, "model")
    check_model_fits_data(net, datamodule)
    optimizer = instantiate(cfg.optimizer, "optimizer")
    scheduler = instantiate(cfg.scheduler, "scheduler") if cfg.get("scheduler") else None
    # The partials only run inside trainer.fit: try them now, while a mistake is cheap to report.
    trial_optimizer = _try("optimizer", optimizer, net.parameters())
    if scheduler is not None:
        _try("scheduler", scheduler, trial_optimizer)
    module = instantiate(
        cfg.module,
        "module",
        _recursive_=False,  # run_config holds _target_ nodes that must stay plain data
        _convert_="all",
        net=net,
        optimizer=optimizer,
        scheduler=scheduler,
        run_config=OmegaConf.to_container(cfg, resolve=True),
    )
    return datamodule, module


def _hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's choices for TensorBoard's HParams view: group names and their scalar settings."""
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    hparams: dict[str, Any] = {"seed": cfg.get("seed")}
    for group in ("model", "data", "optimizer", "scheduler", "trainer"):
        node = cfg.get(group) or {}
        hparams[group] = choices.get(group) or str(node.get("_target_", "none")).rsplit(".", 1)[-1]
        for key, value in node.items():
            if not str(key).startswith("_") and isinstance(value, int | float | str | bool):
                hparams[f"{group}/{key}"] = value
    return hparams


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    values = {key: float(value) for key, value in metrics.items()}
    return {key: value for key, value in values.items() if math.isfinite(value)}


def _write_metrics(output_dir: Path, metrics: dict[str, Any]) -> Path:
    path = output_dir / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return path


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, validate, test the best checkpoint; print and return the test metrics and where things are."""
    output_dir = Path(cfg.paths.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    if checkpoint_dir.exists() and any(checkpoint_dir.iterdir()):
        raise UserError(f"{output_dir} already holds checkpoints of an earlier run; nothing was changed")
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    datamodule, module = build(cfg)
    callbacks = [instantiate(node, f"callbacks.{key}") for key, node in (cfg.get("callbacks") or {}).items() if node]
    loggers = [instantiate(node, f"logger.{key}") for key, node in (cfg.get("logger") or {}).items() if node]
    trainer = instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)

    trainer.fit(module, datamodule=datamodule)
    fit_metrics = _finite(trainer.callback_metrics)
    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    test_metrics: dict[str, float] = {}
    if cfg.get("test", True):
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best_path or None, weights_only=True)
        test_metrics = _finite(results[0]) if results else {}

    tensorboard = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
    summary = {
        **test_metrics,
        **{key: value for key, value in fit_metrics.items() if key.endswith("_best")},
        "best_checkpoint": best_path or None,
        "last_checkpoint": (checkpoint.last_model_path or None) if checkpoint is not None else None,
        "tensorboard_dir": tensorboard.log_dir if tensorboard is not None else None,
        "output_dir": str(output_dir),
    }
    if tensorboard is not None:
        tensorboard.log_hyperparams(
            _hparams(cfg), {f"hp/{key}": value for key, value in {**fit_metrics, **test_metrics}.items()}
        )
    metrics_path = _write_metrics(output_dir, summary)

    console.rule("[bold]classicnets: training finished")
    for key, value in test_metrics.items():
        console.print(f"{key:>16}  {value:.4f}")
    console.print(f"      checkpoint  {summary['best_checkpoint'] or summary['last_checkpoint']}")
    console.print(f"         metrics  {metrics_path}")
    if tensorboard is not None:
        console.print(f"     tensorboard  tensorboard --logdir {tensorboard.log_dir}")
    return summary


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by ``scripts/train.py`` (tensors and plain data only, never code)."""
    path = Path(path)
    try:
        checkpoint = load_file(path, "checkpoint")
    except (FileNotFoundError, ValueError) as err:
        raise UserError(str(err)) from err
    config = checkpoint.get("hyper_parameters", {}).get("run_config") if isinstance(checkpoint, dict) else None
    if not isinstance(config, dict) or "state_dict" not in checkpoint:
        raise UserError(f"{path} is not a classicnets training checkpoint (it holds no run config and weights)")
    return checkpoint


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild model and data from the checkpoint alone, test, print and write the metrics as JSON."""
    checkpoint = load_checkpoint(cfg.ckpt_path)
    run_cfg = OmegaConf.create(checkpoint["hyper_parameters"]["run_config"])
    if cfg.get("data"):
        run_cfg.data = OmegaConf.merge(run_cfg.data, cfg.data)
    datamodule, module = build(run_cfg)
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise UserError(f"{cfg.ckpt_path}: weights do not fit the model in its config: {err}") from err
    trainer = instantiate(cfg.trainer, "trainer", logger=False, callbacks=[])
    results = trainer.test(module, datamodule=datamodule)
    metrics = {**_finite(results[0]), "checkpoint": str(cfg.ckpt_path)}
    metrics_path = _write_metrics(Path(cfg.paths.output_dir), metrics)
    console.rule("[bold]classicnets: evaluation")
    console.print(f"  metrics written to {metrics_path}")
    return metrics
