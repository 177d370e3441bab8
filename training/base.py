"""What every task's LightningModule shares: the network, its optimizer, scheduler and regulariser."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.core.optimizer import LightningOptimizer
from torch import nn
from torch.optim import Optimizer
from torchmetrics import MaxMetric, MeanMetric, MinMetric

from data.normalize import Normalizer
from training.finetune import FineTuning
from training.regularization import Regularizer, split_weights

OptimizerFactory = Callable[[Iterable[nn.Parameter] | Iterable[dict[str, Any]]], Optimizer]
SchedulerFactory = Callable[[Optimizer], Any]


def is_logging_step(trainer: pl.Trainer) -> bool:
    """Whether the training step under way (before its optimizer step) is one whose values Lightning's loggers write:
    every ``trainer.log_every_n_steps``-th.

    Reading a value on the host makes it wait for a GPU's queue of work to finish, so the tasks, the guards and the
    monitoring callbacks compute and read per-step values on these steps only; the other steps read nothing.
    """
    every = trainer.log_every_n_steps
    return bool(every) and (trainer.global_step + 1) % every == 0


def log_to_loggers(trainer: pl.Trainer, metrics: dict[str, float]) -> None:
    """Write ``metrics`` to every logger at the step under way (``trainer.global_step``), as Lightning's
    ``LearningRateMonitor`` does: through ``LightningModule.log`` each value would go through the bookkeeping that
    Lightning does for a logged value (about 0.4 ms a value, docs/benchmarks.md)."""
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)


def loss_mean() -> MeanMetric:
    """A mean of batch losses over the examples: update it with a batch's loss expanded to one value per example
    (``loss.expand(batch_size)``, a view). A NaN is kept, not dropped: torchmetrics' default NaN strategy reads
    every update on the host, which waits for a GPU; with ``"disable"`` it does not, but ignores ``weight``."""
    return MeanMetric(nan_strategy="disable")


def configured_value(factory: OptimizerFactory, name: str) -> float:
    """The value of ``name`` (``lr``, ``weight_decay``) an optimizer partial will use: its own keyword, else the
    optimizer's default, else 0."""
    keywords = getattr(factory, "keywords", {})
    if name in keywords:
        return keywords[name]
    try:
        parameter = inspect.signature(getattr(factory, "func", factory)).parameters.get(name)
    except (TypeError, ValueError):
        return 0.0
    return parameter.default if parameter is not None and isinstance(parameter.default, int | float) else 0.0


def configured_weight_decay(factory: OptimizerFactory) -> float:
    """The ``weight_decay`` an optimizer partial will use: its own keyword, else the optimizer's default, else 0."""
    return configured_value(factory, "weight_decay")


class TrainingModule(pl.LightningModule):
    """Holds ``net`` and builds its optimizer and scheduler from partials (Hydra's ``_partial_: true``; ``optimizer``
    None for a module that is only evaluated).

    The optimizer's ``weight_decay`` applies to the weights only: biases and normalisation parameters form
    a second parameter group without decay, unless ``decay_bias_and_norm`` (torch's own behaviour).
    ``regularizer`` adds its penalty to the training loss (logged as ``train/reg_loss``) and applies its
    constraint after every optimizer step. Subclasses define the loss and the metrics, add the penalty with
    ``regularize`` and list in ``monitorable_metrics`` what a scheduler may watch; they take their own arguments
    and pass the others on as ``**kwargs``. The plain arguments of the whole ``__init__`` chain (Lightning's
    ``save_hyperparameters`` reads the subclass's too), ``run_config`` (the run's resolved configuration) among
    them, are the hyperparameters the checkpoint keeps, from which alone model and data are rebuilt; ``net``,
    ``optimizer``, ``scheduler``, ``regularizer`` and ``finetune`` are left out.
    ``finetune`` (``training.finetune.FineTuning``) is how ``net``, pretrained, was partly frozen:
    frozen parameters are left out of the optimizer, frozen batch norms stay in eval mode, and the layers outside
    the classifier train at ``finetune.backbone_lr_scale`` times the learning rate.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory | None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str = "val/loss",
        regularizer: Regularizer | None = None,
        decay_bias_and_norm: bool = False,
        finetune: FineTuning | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "regularizer", "finetune"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.scheduler_monitor = scheduler_monitor
        self.regularizer = regularizer
        self.decay_bias_and_norm = decay_bias_and_norm
        self.finetune = finetune
        self._restored_best: dict[str, dict[str, torch.Tensor]] | None = None  # from a checkpoint, until training
        self.train_loss = loss_mean()
        self.train_reg_loss = loss_mean() if regularizer is not None else None
        # the values of the last training batch that logged them (log_batch_values), by name
        self.batch_values: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True) -> TrainingModule:
        """Set training (or eval) mode; the batch norms that ``finetune`` froze stay in eval mode."""
        super().train(mode)
        if mode and self.finetune is not None:
            for norm in self.finetune.frozen_norms(self.net):
                norm.eval()
        return self

    def on_train_start(self) -> None:
        # Lightning leaves each layer in the mode it finds it (the validation loop restores them as they were):
        # the frozen batch norms go into eval mode once, here, after its check that warns of layers in eval mode.
        if self.finetune is not None:
            self.train()
        # The sanity-check validation does not count towards the best values; a resumed run goes on from its
        # checkpoint's.
        restored = self._restored_best or {}
        for name, metric in self._best_metrics().items():
            metric.reset()
            for state, value in restored.get(name, {}).items():
                setattr(metric, state, value.to(metric.device))
        self._restored_best = None

    def _best_metrics(self) -> dict[str, MaxMetric | MinMetric]:
        """The running best values of validation metrics (``val_acc_best``, ``val_loss_best``), by attribute name."""
        return {name: child for name, child in self.named_children() if isinstance(child, MaxMetric | MinMetric)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep what the weights and the run config leave out: the running best validation values (for resuming),
        and the data set's class names and input normalisation (for ``training.inference.load_model``)."""
        checkpoint["best_metrics"] = {
            name: {state: value.detach().cpu() for state, value in metric.metric_state.items()}
            for name, metric in self._best_metrics().items()
        }
        datamodule = self.trainer.datamodule
        class_names = getattr(datamodule, "class_names", None)
        if class_names is not None:
            checkpoint["class_names"] = [str(name) for name in class_names]
        normalizer = getattr(datamodule, "normalizer", None)
        if isinstance(normalizer, Normalizer):
            checkpoint["normalizer"] = {name: value.cpu() for name, value in normalizer.state_dict().items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._restored_best = checkpoint.get("best_metrics")

    def forward(self, x: torch.Tensor) -> Any:
        return self.net(x)

    def monitorable_metrics(self) -> list[str]:
        """The metrics logged once per epoch that a scheduler can watch (ReduceLROnPlateau's ``monitor``)."""
        return ["train/loss", "val/loss"]

    def logs_this_step(self) -> bool:
        """Whether ``training_step`` logs the values of its batch (``log_batch_values``): on the steps the loggers
        write (``is_logging_step``), an epoch's last batch and under ``fast_dev_run``.

        The tasks accumulate their epoch values in torchmetrics objects on every batch (which synchronise across
        processes when computed) and log them once an epoch; a batch's values (``train/loss_step``, ...) are
        computed and logged on these steps only, since a value written to a logger or shown on the progress bar is
        read on the host.
        """
        try:
            trainer = self.trainer
        except RuntimeError:  # not attached to a Trainer (a loop of one's own): nothing is logged
            return False
        return is_logging_step(trainer) or trainer.is_last_batch or bool(trainer.fast_dev_run)

    def log_batch_values(self, values: dict[str, torch.Tensor]) -> None:
        """Log one training batch's values (``train/loss_step``, ...) on a step that logs (``logs_this_step``): kept
        in ``batch_values``, which the progress bar shows and the run's summary keeps, and written to the loggers
        directly (``log_to_loggers``, one host read for all of them) on the steps they write.

        Not through ``self.log``: Lightning's bookkeeping of a logged value costs about 0.4 ms, as much as a LeNet-5
        training step computes (docs/benchmarks.md). So they are not among ``trainer.callback_metrics``, which
        callbacks monitor; the epoch's values are.
        """
        values = {name: value.detach() for name, value in values.items()}
        self.batch_values.update(values)
        trainer = self.trainer
        if is_logging_step(trainer) and trainer.loggers and trainer.is_global_zero:
            read = torch.stack([value.float() for value in values.values()]).tolist()
            log_to_loggers(trainer, dict(zip(values, read, strict=True)))

    def log_training_loss(self, loss: torch.Tensor, batch_size: int) -> bool:
        """Add a batch's loss to the epoch's mean; log it as ``train/loss_step`` on the steps that log. Returns
        whether this step logs (``logs_this_step``), for the task's other values of the batch."""
        self.train_loss.update(loss.detach().expand(batch_size))
        logs = self.logs_this_step()
        if logs:
            self.log_batch_values({"train/loss_step": loss})
        return logs

    def on_train_epoch_end(self) -> None:
        """Log the epoch's mean training loss as ``train/loss_epoch`` (and, for a scheduler's ``monitor`` only, as
        ``train/loss``), and the regulariser's mean penalty as ``train/reg_loss_epoch``."""
        loss = self.train_loss.compute()
        self.log("train/loss_epoch", loss, prog_bar=True, sync_dist=True)
        self.log("train/loss", loss, logger=False, sync_dist=True)
        self.train_loss.reset()
        if self.train_reg_loss is not None and self.train_reg_loss.update_called:
            self.log("train/reg_loss_epoch", self.train_reg_loss.compute(), sync_dist=True)
            self.train_reg_loss.reset()

    def regularize(self, loss: torch.Tensor, batch_size: int) -> torch.Tensor:
        """``loss`` plus the regulariser's penalty, which is logged as ``train/reg_loss_step`` on the steps that log
        and as ``train/reg_loss_epoch``, its mean over the epoch's examples."""
        if self.regularizer is None:
            return loss
        penalty = self.regularizer.penalty(split_weights(self)[0])
        if penalty is None:
            return loss
        self.train_reg_loss.update(penalty.detach().expand(batch_size))
        if self.logs_this_step():
            self.log_batch_values({"train/reg_loss_step": penalty})
        return loss + penalty

    def parameter_groups(self) -> list[nn.Parameter] | list[dict[str, Any]]:
        """What the optimizer partial is called with: the trainable parameters (frozen ones left out), split into
        decayed weights and the rest (``weight_decay`` 0) when the optimizer decays and ``decay_bias_and_norm`` is
        off, and each of those into the classifier's and the backbone's when ``finetune`` scales the backbone's
        learning rate."""
        trainable = [parameter for parameter in self.parameters() if parameter.requires_grad]
        if self.decay_bias_and_norm or not configured_weight_decay(self.optimizer_factory):
            groups = [{"params": trainable}]
        else:
            weights, others = split_weights(self)
            groups = [{"params": weights, "name": "decay"}, {"params": others, "weight_decay": 0.0, "name": "no_decay"}]
        if self.finetune is not None:
            groups = self.finetune.scale_backbone(self.net, groups, configured_value(self.optimizer_factory, "lr"))
        groups = [group for group in groups if group["params"]]
        return groups[0]["params"] if len(groups) == 1 and "name" not in groups[0] else groups

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise RuntimeError(f"{type(self).__name__} was built without an optimizer, to be evaluated only")
        optimizer = self.optimizer_factory(self.parameter_groups())
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": self.scheduler_factory(optimizer),
                "interval": self.scheduler_interval,
                "monitor": self.scheduler_monitor,
            },
        }

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: Optimizer | LightningOptimizer,
        optimizer_closure: Callable[[], Any] | None = None,
    ) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self.regularizer is not None:
            self.regularizer.constrain(self)
