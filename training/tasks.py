"""The two jobs behind the scripts: ``train(cfg)`` and ``evaluate(cfg)``."""

from __future__ import annotations

import functools
import json
import math
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException
from rich.console import Console
from torch import nn
from torchmetrics.functional.classification import multiclass_accuracy

from data.base import ClassificationDataModule
from models import ClassCountMismatch, check_finite, did_you_mean, load_file, load_pretrained
from training.base import SchedulerFactory, TrainingModule
from training.checkpoint_io import read_net_weights, write_record
from training.classifier import Classifier
from training.config import (
    UserError,
    check_config,
    check_stored_config,
    check_trainer,
    instantiate,
    warn_zero_learning_rate,
)
from training.finetune import FineTuning
from training.interrupt import Interrupted, StopOnSignal, during, hydra_override, interrupted
from training.lr_finder import find_learning_rate
from training.resume import RandomState, check_resumable, resume_path
from training.schedulers import with_warmup
from training.speed import SpeedSwitches

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


def pad_to_input_field(cfg: DictConfig, net: nn.Module, datamodule: pl.LightningDataModule) -> None:
    """Centre smaller images in the one input field of a network that has one (LeNet-5's 32x32: the 28x28 MNIST
    digits padded by 2, as LeCun et al. 1998 did), for data sets that can pad (``data.pad``, still 0); recorded
    in ``cfg.data.pad``, so that the run's config and checkpoints, and everything rebuilt from them, pad too."""
    field = getattr(net, "input_field", None)
    if field is None or cfg.data.get("pad", None) != 0 or not datamodule.pad_to(field):
        return
    cfg.data.pad = datamodule.pad
    side, pad = datamodule.image_size, datamodule.pad
    console.print(
        f"data: the {side}x{side} images centred in {type(net).__name__}'s {field}x{field} input field ({pad} zero "
        f"pixels on every side, data.pad={pad}); data.image_size={field} resizes them instead"
    )


def _try(key: str, factory: Any, argument: Any) -> Any:
    try:
        return factory(argument)
    except (TypeError, ValueError) as err:
        raise UserError(f"{key}: {err}") from err


SCHEDULER_SETTINGS = ("interval", "monitor", "warmup")


def build_scheduler(node: DictConfig | None) -> tuple[SchedulerFactory | None, dict[str, Any]]:
    """The scheduler partial (behind its warmup) and the module's ``scheduler_interval``/``scheduler_monitor``.

    The scheduler config holds the torch scheduler's arguments and Lightning's side of it: ``interval``
    (epoch or step), ``monitor`` and ``warmup``; a config without ``_target_`` is a constant rate.
    """
    if not node:
        return None, {}
    interval, monitor, warmup = node.get("interval", "epoch"), node.get("monitor"), node.get("warmup", 0)
    if interval not in ("epoch", "step"):
        raise UserError(f"scheduler.interval: expected 'epoch' or 'step', got {interval!r}")
    if monitor is not None and not isinstance(monitor, str):
        raise UserError(f"scheduler.monitor: expected a metric name or null, got {monitor!r}")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise UserError(f"scheduler.warmup: expected a number of {interval}s, 0 or more, got {warmup!r}")
    schedule = None
    if "_target_" in node:
        arguments = OmegaConf.to_container(node, resolve=True)
        schedule = instantiate(
            OmegaConf.create({key: value for key, value in arguments.items() if key not in SCHEDULER_SETTINGS}),
            "scheduler",
        )
    if warmup:
        schedule = functools.partial(with_warmup, warmup=warmup, schedule=schedule)
    if schedule is None:
        return None, {}
    return schedule, {"scheduler_interval": interval} | ({"scheduler_monitor": monitor} if monitor else {})


def check_monitor(
    module: TrainingModule, monitor: str, key: str = "scheduler.monitor", also: Sequence[str] = ()
) -> None:
    """Raise ``UserError`` when the setting ``key`` watches a metric that ``module`` does not log (nor is one of
    ``also``), with the close matches."""
    accepted = [*module.monitorable_metrics(), *also]
    if monitor not in accepted:
        hint = did_you_mean(monitor, accepted)
        raise UserError(
            f"{key}: {type(module).__name__} does not log {monitor!r}; {hint}accepted: {', '.join(accepted)}"
        )


def check_callback_monitors(module: TrainingModule, callbacks: dict[str, pl.Callback]) -> None:
    """Raise ``UserError`` for a callback (a checkpoint's, early stopping's) that monitors a metric ``module`` does not
    log, before training rather than when the first epoch ends; a checkpoint may monitor ``epoch`` and ``step`` too."""
    for key, callback in callbacks.items():
        monitor = getattr(callback, "monitor", None)
        if isinstance(monitor, str):
            also = ("epoch", "step") if isinstance(callback, ModelCheckpoint) else ()
            check_monitor(module, monitor, f"callbacks.{key}.monitor", also)


def check_targets(module: pl.LightningModule, datamodule: pl.LightningDataModule) -> None:
    """Refuse a module that trains on other labels than the data has (class indices or multi-hot attributes)."""
    wanted, given = getattr(module, "targets", None), getattr(datamodule, "targets", None)
    if wanted and given and wanted != given:
        kinds = {"classes": "class indices", "attributes": "multi-hot attributes"}
        raise UserError(
            f"module: {type(module).__name__} trains on {kinds[wanted]}, but {type(datamodule).__name__} gives "
            f"{kinds[given]}; use module={'multilabel' if given == 'attributes' else 'classifier'}"
        )


def build_net(cfg: DictConfig, finetune: FineTuning | None = None) -> nn.Module:
    """The network of ``cfg.model``, with the weights of ``model.pretrained`` if it names any and the layers that
    ``finetune`` freezes frozen. A pretrained classifier for another number of classes is replaced by a new one
    when fine-tuning, and is an error otherwise."""
    pretrained = cfg.model.get("pretrained")
    net = instantiate(cfg.model, "model", **({"pretrained": None} if pretrained is not None else {}))
    if pretrained is not None:
        source, origin = pretrained, None
        try:
            if isinstance(pretrained, str) and pretrained != "torchvision":  # a file: its network's weights
                (source, trained_as), origin = read_net_weights(pretrained), pretrained
                if trained_as and trained_as != cfg.model.name:
                    origin += f" (a checkpoint of {trained_as})"
            load_pretrained(net, source, cfg.model.name, reset_classifier=finetune is not None, origin=origin)
        except ClassCountMismatch as err:
            raise UserError(
                f"model.pretrained: {err.origin} has a classifier for {err.loaded} classes, but the model has "
                f"{err.wanted} (data.num_classes={err.wanted}); to train a new classifier on the pretrained network, "
                "choose finetune=fixed_features (the classifier alone) or finetune=full (every layer)"
            ) from err
        except (FileNotFoundError, TypeError, ValueError) as err:
            raise UserError(f"model.pretrained: {err}") from err
    if finetune is not None:
        _try("finetune", finetune.freeze_layers, net)
    return net


def read_data(cfg: DictConfig, net: nn.Module, datamodule: pl.LightningDataModule, stage: str) -> None:
    """Fit ``datamodule`` to ``net`` (``pad_to_input_field``), read its data for ``stage`` now, so that missing or
    unreadable files are reported before training or testing starts, and check that ``net`` takes its inputs."""
    pad_to_input_field(cfg, net, datamodule)
    try:
        datamodule.prepare_data()
        datamodule.setup(stage)
    except (FileNotFoundError, ValueError) as err:
        raise UserError(f"data: {err}") from err
    check_model_fits_data(net, datamodule)


def build(
    cfg: DictConfig, datamodule: pl.LightningDataModule | None = None
) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """The DataModule (``datamodule`` if given, its data already read) and the LightningModule (with its network)
    that ``cfg`` describes, ready to train."""
    if datamodule is None:
        datamodule = instantiate(cfg.data, "data")
    finetune = instantiate(cfg.finetune, "finetune") if cfg.get("finetune") else None
    net = build_net(cfg, finetune)
    read_data(cfg, net, datamodule, "fit")
    optimizer = instantiate(cfg.optimizer, "optimizer")
    scheduler, module_arguments = build_scheduler(cfg.get("scheduler"))
    if cfg.get("regularizer"):  # passed only when there is one, so that every module need not take it
        module_arguments["regularizer"] = instantiate(cfg.regularizer, "regularizer")
    if finetune is not None:
        module_arguments["finetune"] = finetune
    module = instantiate(
        cfg.module,
        "module",
        _recursive_=False,  # run_config holds _target_ nodes that must stay plain data
        _convert_="all",
        net=net,
        optimizer=optimizer,
        scheduler=scheduler,
        run_config=OmegaConf.to_container(cfg, resolve=True),
        **module_arguments,
    )
    if "scheduler_monitor" in module_arguments:
        check_monitor(module, module.scheduler_monitor)
    check_targets(module, datamodule)
    # The partials only run inside trainer.fit: try them now, while a mistake is cheap to report.
    trial_optimizer = _try("optimizer", optimizer, module.parameter_groups())
    if scheduler is not None:
        _try("scheduler", scheduler, trial_optimizer)
    return datamodule, module


def _hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's choices for TensorBoard's HParams view: group names and their scalar settings."""
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    hparams: dict[str, Any] = {"seed": cfg.get("seed")}
    for group in ("model", "data", "optimizer", "scheduler", "regularizer", "finetune", "trainer"):
        node = cfg.get(group) or {}
        hparams[group] = choices.get(group) or str(node.get("_target_", "none")).rsplit(".", 1)[-1]
        for key, value in node.items():
            if not str(key).startswith("_") and isinstance(value, int | float | str | bool):
                hparams[f"{group}/{key}"] = value
    # and every other setting given on the command line, such as the keys a sweep varies
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    for override in overrides:
        key = str(override).partition("=")[0].lstrip("+~")
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, int | float | str | bool):
            hparams.setdefault(key.replace(".", "/"), value)
    return hparams


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {key: float(value) for key, value in metrics.items()}


def _json_safe(value: Any) -> Any:
    """``value`` with each NaN or infinite float as the string "nan", "inf" or "-inf", which JSON can hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def _write_metrics(output_dir: Path, metrics: dict[str, Any], kept: str) -> Path:
    """Write ``metrics.json`` whole (``write_record``): every metric, a non-finite one as "nan", "inf" or "-inf"
    (JSON has no NaN)."""
    text = json.dumps(_json_safe(metrics), indent=2, allow_nan=False) + "\n"
    return write_record(output_dir / "metrics.json", text, kept)


def out_of_memory(cfg: DictConfig, trainer: pl.Trainer) -> UserError:
    """The one-line error for a device that ran out of memory: the batch size, and what to change."""
    batch_size = cfg.data.get("batch_size")
    smaller = (
        f"a smaller batch, e.g. data.batch_size={batch_size // 2}, "
        if isinstance(batch_size, int) and batch_size > 1
        else ""
    )
    return UserError(
        f"out of memory on {trainer.strategy.root_device} with data.batch_size={batch_size}: choose {smaller}"
        "or less memory per example (trainer.precision=bf16-mixed, a smaller model or input); Lightning's "
        "batch-size finder gives the largest batch that fits: docs/reliability.md#out-of-memory"
    )


def run_callbacks(cfg: DictConfig, module: TrainingModule, **arguments: dict[str, Any]) -> list[pl.Callback]:
    """The callbacks of a training run: those of ``cfg.callbacks`` (``arguments[key]``: extra keyword arguments of
    one of them), their monitors checked against the module's metrics; the speed switches under ``channels_last``
    or ``compile``; the handler of SIGTERM and SIGINT (``StopOnSignal``); and the random states, which checkpoints
    keep."""
    configured = {
        key: instantiate(node, f"callbacks.{key}", **arguments.get(key, {}))
        for key, node in (cfg.get("callbacks") or {}).items()
        if node
    }
    check_callback_monitors(module, configured)
    callbacks = list(configured.values())
    try:  # checked whether or not compile=true: a mistake in it is not left to show on a later run
        speed = SpeedSwitches(bool(cfg.channels_last), bool(cfg.compile), cfg.get("compile_mode", "default"))
    except ValueError as err:
        raise UserError(str(err)) from None
    if cfg.channels_last or cfg.compile:
        callbacks.append(speed)
    # SIGTERM and SIGINT stop at a step boundary, with a checkpoint (docs/reliability.md); a resumed run restores
    # the random states
    return [*callbacks, StopOnSignal(), RandomState()]


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, validate, test the best checkpoint; print and return the test metrics and where things are."""
    check_config(cfg, skip={"scheduler": SCHEDULER_SETTINGS})  # every value, before anything is read or built
    check_trainer(cfg.trainer)
    warn_zero_learning_rate(cfg)
    output_dir = Path(cfg.paths.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    if checkpoint_dir.exists() and any(checkpoint_dir.iterdir()):
        raise UserError(f"{output_dir} already holds checkpoints of an earlier run; nothing was changed")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot write the run's directory {output_dir}: {err.strerror or err}") from err
    seed = cfg.get("seed")  # numpy's range; Lightning's seed_everything would fail with a traceback
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32):
        raise UserError(f"seed: expected an integer from 0 to {2**32 - 1}, or null, got {seed!r}")
    resume = resume_path(cfg)  # a run to go on with (docs/checkpoints.md): checked before anything is built
    if resume is not None:
        check_resumable(cfg, resume, load_checkpoint(resume))
    if seed is not None:
        pl.seed_everything(seed, workers=True, verbose=False)  # the seed is in config.yaml

    datamodule, module = build(cfg)
    callbacks = run_callbacks(cfg, module)
    stopper = next(callback for callback in callbacks if isinstance(callback, StopOnSignal))
    loggers = [instantiate(node, f"logger.{key}") for key, node in (cfg.get("logger") or {}).items() if node]
    trainer = instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
    if cfg.get("lr_find"):
        with during("during the learning-rate range test (lr_find=true), before training; nothing to resume"):
            lr = find_learning_rate(trainer, module, datamodule, output_dir / "lr_find.png")
        if lr is not None:  # train as a run given optimizer.lr=<lr> would: same seed, a fresh module, the data read
            cfg = OmegaConf.merge(cfg, {"optimizer": {"lr": float(lr)}})  # the caller's config stays as it was
            if seed is not None:
                pl.seed_everything(seed, workers=True, verbose=False)
            datamodule, module = build(cfg, datamodule)
    if trainer.is_global_zero:  # the other processes of a distributed run write nothing themselves
        write_record(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True), "nothing was trained")

    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except (SIGTERMException, Interrupted) as stop:  # at a step boundary, or at once outside the training steps
        raise interrupted(trainer, stopper, getattr(stop, "signum", None)) from None
    except torch.OutOfMemoryError as err:
        raise out_of_memory(cfg, trainer) from err
    fit_metrics = _floats({**trainer.callback_metrics, **module.batch_values})  # the last batch's values too
    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    # read before testing: loading the best checkpoint restores the callback's state as it was then
    last_path = checkpoint.last_model_path if checkpoint is not None else ""
    if checkpoint is not None and not last_path:  # ddp_spawn hands back the best path only
        last = Path(checkpoint.dirpath or "") / f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}"
        last_path = str(last) if last.is_file() else ""
    test_metrics: dict[str, float] = {}
    if cfg.get("test", True):
        saved = best_path or last_path
        evaluation = shlex.join(["python", "scripts/eval.py", hydra_override("ckpt_path", saved)]) if saved else ""
        then = f": test it with {evaluation}" if saved else ""
        with during(f"while testing, after training finished; no metrics were written{then}"):
            results = trainer.test(
                module, datamodule=datamodule, ckpt_path=best_path or None, weights_only=True, verbose=False
            )
        test_metrics = _floats(results[0]) if results else {}

    tensorboard = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
    summary = {
        **test_metrics,
        **{key: value for key, value in fit_metrics.items() if key.endswith("_best")},
        "best_checkpoint": best_path or None,
        "last_checkpoint": last_path or None,
        "tensorboard_dir": tensorboard.log_dir if tensorboard is not None else None,
        "output_dir": str(output_dir),
        "resumed_from": str(resume) if resume is not None else None,
    }
    if tensorboard is not None:
        tensorboard.log_hyperparams(
            _hparams(cfg), {f"hp/{key}": value for key, value in {**fit_metrics, **test_metrics}.items()}
        )
        tensorboard.finalize("success")  # written now: the next job of a multirun runs in this same process
    if not trainer.is_global_zero:
        return summary

    console.rule("[bold]classicnets: training finished")
    for key, value in test_metrics.items():
        console.print(f"{key:>16}  {value:.4f}")
    console.print(f"      checkpoint  {summary['best_checkpoint'] or summary['last_checkpoint']}")
    if resume is not None:
        console.print(f"    resumed from  {resume}")
    metrics_path = _write_metrics(output_dir, summary, "the checkpoints are kept, the metrics printed above")
    console.print(f"         metrics  {metrics_path}")
    if tensorboard is not None:
        console.print(f"     tensorboard  tensorboard --logdir {tensorboard.log_dir}")
    return summary


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by ``scripts/train.py`` (tensors and plain data only, never code), its run config
    vetted (``check_stored_config``) and its weights checked: intact (``check_archive``) and finite."""
    path = Path(path)
    try:
        checkpoint = load_file(path, "checkpoint")
    except (FileNotFoundError, ValueError) as err:
        raise UserError(str(err)) from err
    config = checkpoint.get("hyper_parameters", {}).get("run_config") if isinstance(checkpoint, dict) else None
    if not isinstance(config, dict) or "state_dict" not in checkpoint:
        raise UserError(f"{path} is not a classicnets training checkpoint (it holds no run config and weights)")
    check_stored_config(config, str(path))  # untrusted: eval, predict and export build from it
    try:  # the weights, and an EMA run's live weights
        for weights in (checkpoint["state_dict"], checkpoint.get("current_model_state")):
            if isinstance(weights, dict):
                check_finite(weights, path)
    except ValueError as err:
        raise UserError(str(err)) from err
    return checkpoint


def _rebuild(cfg: DictConfig, path: str, checkpoint: dict[str, Any]) -> tuple[pl.LightningDataModule, TrainingModule]:
    """Data and module from the checkpoint's run config (with the eval config's ``data`` overrides), its weights in,
    to be tested: the test data read, and neither optimizer nor scheduler (nor regulariser, nor fine-tuning)."""
    run_cfg = OmegaConf.create(checkpoint["hyper_parameters"]["run_config"])
    if run_cfg.model.get("pretrained") is not None:  # the checkpoint's weights replace them: the file may be gone
        run_cfg.model.pretrained = None
    if cfg.get("data"):
        _check_eval_data(run_cfg.data, cfg.data)
        run_cfg.data = OmegaConf.merge(run_cfg.data, cfg.data)
    datamodule = instantiate(run_cfg.data, "data")
    net = build_net(run_cfg)
    read_data(run_cfg, net, datamodule, "test")
    module = instantiate(run_cfg.module, "module", _recursive_=False, _convert_="all", net=net, optimizer=None)
    check_targets(module, datamodule)
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise UserError(f"{path}: weights do not fit the model in its config: {err}") from err
    return datamodule, module


# Data settings that change how one member sees the examples, not which examples: they may differ in an ensemble.
PER_MEMBER_DATA_SETTINGS = (
    "batch_size", "num_workers", "pin_memory", "fast_path", "augment", "image_size", "in_channels", "normalize",
)  # fmt: skip


# What an evaluation may change of a checkpoint's data: how the test images are fed and seen, not which are scored.
EVAL_DATA_SETTINGS = (*PER_MEMBER_DATA_SETTINGS, "eval_crop")


def _check_eval_data(trained: DictConfig, given: DictConfig) -> None:
    """Raise ``UserError`` for a data override of an evaluation that changes which images it scores (the split's
    seed or sizes, another data set or directory): the test split would no longer be the one held out in training."""
    was, now = OmegaConf.to_container(trained, resolve=True), OmegaConf.to_container(given, resolve=True)
    for key, value in now.items():
        if key not in EVAL_DATA_SETTINGS and was.get(key) != value:
            raise UserError(
                f"data.{key}={value!r} would change which images are scored (the checkpoint was trained with "
                f"{was.get(key)!r}): an evaluation scores the test split held out in training, never training "
                f"images; it may change only data.{', data.'.join(EVAL_DATA_SETTINGS)}"
            )


def _check_same_data(paths: list[str], checkpoints: list[dict[str, Any]]) -> None:
    """Raise ``UserError`` unless every member was trained on the same data set (and so the same classes)."""

    def data_set(checkpoint: dict[str, Any]) -> dict[str, Any]:
        data = checkpoint["hyper_parameters"]["run_config"].get("data") or {}
        return {key: value for key, value in data.items() if key not in PER_MEMBER_DATA_SETTINGS}

    first = data_set(checkpoints[0])
    for path, checkpoint in zip(paths[1:], checkpoints[1:], strict=True):
        other = data_set(checkpoint)
        for key in dict.fromkeys([*first, *other]):
            if first.get(key) != other.get(key):
                raise UserError(
                    f"ensemble members must share the data set: {paths[0]} has data.{key}={first.get(key)!r}, "
                    f"{path} has data.{key}={other.get(key)!r}"
                )


class ProbabilityRecorder(pl.Callback):
    """Keeps a classifier's class probabilities and the labels of every test batch, on the CPU: the softmax of the
    scores its ``test_step`` returns (with K crops per image, of the log of their averaged softmax: that average)."""

    def __init__(self) -> None:
        self.probabilities: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, *_: Any
    ) -> None:
        self.probabilities.append(outputs.float().softmax(dim=-1).cpu())
        self.labels.append(batch[1].cpu())


def _ensemble_metrics(probabilities: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Cross-entropy of the averaged probabilities (``test/loss``), top-1 and, past 5 classes, top-5 accuracy."""
    num_classes = probabilities.shape[-1]
    log_probabilities = probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()
    metrics = {
        "test/loss": nn.functional.nll_loss(log_probabilities, labels),
        "test/acc": multiclass_accuracy(probabilities, labels, num_classes, average="micro"),
    }
    if num_classes > 5:
        metrics["test/acc_top5"] = multiclass_accuracy(probabilities, labels, num_classes, top_k=5, average="micro")
    return {key: value.item() for key, value in metrics.items()}


def ensemble_predictions(cfg: DictConfig, paths: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, Any]]]:
    """Test each classifier in ``paths``: their class probabilities (members, examples, classes), the test
    labels, and each member's test metrics; the members must share the data set."""
    checkpoints = [load_checkpoint(path) for path in paths]  # every file is read before anything is built
    _check_same_data(paths, checkpoints)
    members, probabilities, labels = [], [], []
    for path, checkpoint in zip(paths, checkpoints, strict=True):
        datamodule, module = _rebuild(cfg, path, checkpoint)
        if not isinstance(module, Classifier):
            raise UserError(f"an ensemble averages class probabilities: {path} is a {type(module).__name__} checkpoint")
        recorder = ProbabilityRecorder()
        trainer = instantiate(cfg.trainer, "trainer", logger=False, callbacks=[recorder])
        results = trainer.test(module, datamodule=datamodule)
        members.append({**_floats(results[0]), "checkpoint": path})
        probabilities.append(torch.cat(recorder.probabilities))
        labels.append(torch.cat(recorder.labels))
    for path, other in zip(paths[1:], labels[1:], strict=True):
        if not torch.equal(labels[0], other):
            raise UserError(f"ensemble members must share the test set: {path}'s test labels differ from {paths[0]}'s")
    return torch.stack(probabilities), labels[0], members


def evaluate_ensemble(cfg: DictConfig, paths: list[str]) -> dict[str, Any]:
    """Test the classifiers in ``paths`` and their ensemble, the mean of their softmax outputs; print and write
    the ensemble's metrics with each member's."""
    probabilities, labels, members = ensemble_predictions(cfg, paths)
    metrics = {**_ensemble_metrics(probabilities.mean(dim=0), labels), "checkpoints": paths, "members": members}
    console.rule("[bold]classicnets: ensemble evaluation")
    console.print(f"{'test/acc':>8}  {'test/loss':>9}")
    for member in members:
        console.print(f"{member['test/acc']:8.4f}  {member['test/loss']:9.4f}  {member['checkpoint']}")
    console.print(f"{metrics['test/acc']:8.4f}  {metrics['test/loss']:9.4f}  ensemble of {len(members)}")
    metrics_path = _write_metrics(Path(cfg.paths.output_dir), metrics, "the metrics are printed above")
    console.print(f"  metrics written to {metrics_path}")
    return metrics


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild model and data from the checkpoint alone, test, print and write the metrics as JSON.

    ``cfg.ckpt_path`` is one checkpoint, or a list of classifier checkpoints to test as an ensemble.
    """
    paths = [str(path) for path in cfg.ckpt_path] if isinstance(cfg.ckpt_path, ListConfig) else [str(cfg.ckpt_path)]
    if not paths:
        raise UserError("ckpt_path: give a checkpoint, or a list of them: ckpt_path=[a.ckpt,b.ckpt]")
    if len(paths) > 1:
        with during("while testing the ensemble; no metrics were written"):
            return evaluate_ensemble(cfg, paths)
    datamodule, module = _rebuild(cfg, paths[0], load_checkpoint(paths[0]))
    trainer = instantiate(cfg.trainer, "trainer", logger=False, callbacks=[])
    with during("while testing; no metrics were written"):
        results = trainer.test(module, datamodule=datamodule)
    metrics = {**_floats(results[0]), "checkpoint": paths[0]}
    metrics_path = _write_metrics(Path(cfg.paths.output_dir), metrics, "the metrics are printed above")
    console.rule("[bold]classicnets: evaluation")
    console.print(f"  metrics written to {metrics_path}")
    return metrics
