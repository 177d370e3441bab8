"""Callbacks that babysit the learning process (CS231n notes, "Neural Networks Part 3") in TensorBoard.

Each is its own key in ``configs/callbacks/default.yaml`` (``callbacks.<key>=null`` switches it off):

* ``speed`` (``EpochSpeed``): ``time/epoch_seconds`` and ``time/samples_per_second``, once per epoch;
* ``grad_norm`` (``GradientNorm``): ``train/grad_norm``, the global gradient norm before clipping;
* ``layer_stats`` (``LayerStatistics``): every ``every_n_steps`` steps, per layer ``activations/<layer>/{mean,std}``
  and histogram ``activations/<layer>``, ``dead_fraction/<layer>`` after rectifiers, and per parameter tensor
  histograms ``weights/<param>``, ``gradients/<param>`` and the scalar ``update_ratio/<param>``;
* ``filters`` (``FilterImages``): ``filters/<layer>``, the first conv layer's filters as an image grid, at the start
  and after every ``every_n_epochs``-th epoch and the last;
* ``confusion_matrix`` (``ConfusionMatrix``) and ``misclassified`` (``MisclassifiedImages``): classifiers only,
  ``val/confusion_matrix`` and ``val/misclassified`` images after the validations of every ``every_n_epochs``-th
  epoch and the last.

The scalars of ``speed`` and ``grad_norm`` go to every logger (CSV too); the rest is written to the TensorBoard
logger's writer and is skipped when the run has none (``logger=csv``, ``logger=none``, ``debug=fdr``). Nothing is
computed on the steps and epochs that log nothing.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from functools import cache
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image, ImageDraw, ImageFont
from pytorch_lightning.loggers import TensorBoardLogger as LightningTensorBoardLogger
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.data import extract_batch_size
from torch import nn
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle
from torch.utils.tensorboard import SummaryWriter
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.utils import make_grid
from typing_extensions import override

from models import ChannelMaxout, ScaledTanh
from models.rnn import RecurrentNet
from training.base import is_logging_step, log_to_loggers
from training.classifier import Classifier
from training.guards import norms

# recurrent layers count with their output sequence of hidden states
LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.RNNBase, RecurrentNet)
# units after these are dead when their output is never positive over a batch: exactly zero for ReLU and ReLU6,
# stuck on the flat or saturating negative side for the others
RECTIFIERS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU)
ACTIVATIONS = (*RECTIFIERS, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus, ScaledTanh, ChannelMaxout)
# tf.summary.histogram's default. Every byte sent to TensorBoard costs about 0.1 us of CPU (without TensorFlow, its
# writer checksums the records in pure Python): 30 bins keep a histogram near 500 bytes.
HISTOGRAM_BINS = 30
ANNOTATED_CLASSES = 20  # confusion matrices up to this many classes show their counts and class names
# the ends of the confusion matrix's colour scale (matplotlib's "Blues"): a row's share 0 and 1
WHITE, BLUE = torch.tensor([247.0, 251.0, 255.0]), torch.tensor([8.0, 48.0, 107.0])


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's ``TensorBoardLogger`` whose event file is flushed at most every ``flush_secs`` seconds.

    Lightning calls the logger's ``save`` after every ``log_metrics``, and the upstream ``save`` flushes the event
    file each time (about a millisecond, several times an epoch: a few per cent of a small network's epoch). Here it
    does so at most every ``flush_secs`` seconds; the writer's own thread flushes at that interval too, and the end
    of the run (``finalize``) flushes and closes the file. TensorBoard reads the file every few seconds anyway.
    ``flush_secs`` and the other arguments are Lightning's (the rest go to ``SummaryWriter``)."""

    def __init__(self, *args: Any, flush_secs: float = 5.0, **kwargs: Any) -> None:
        super().__init__(*args, flush_secs=flush_secs, **kwargs)
        self.flush_secs = flush_secs
        self._next_save = 0.0  # time.monotonic() from which save() writes again

    @override
    @rank_zero_only
    def save(self) -> None:
        now = time.monotonic()
        if now >= self._next_save:
            self._next_save = now + self.flush_secs
            super().save()


def logs_to_tensorboard(trainer: pl.Trainer) -> bool:
    """Whether the run has a TensorBoard logger (in every process of a distributed run)."""
    return any(isinstance(lg, LightningTensorBoardLogger) for lg in trainer.loggers)


def tensorboard(trainer: pl.Trainer) -> SummaryWriter | None:
    """The run's TensorBoard writer, or None when it logs elsewhere or nowhere, and in the processes of a
    distributed run other than the first, which write no events."""
    if not trainer.is_global_zero:
        return None
    return next((lg.experiment for lg in trainer.loggers if isinstance(lg, LightningTensorBoardLogger)), None)


def _net(pl_module: pl.LightningModule) -> nn.Module:
    return pl_module.net if isinstance(getattr(pl_module, "net", None), nn.Module) else pl_module


def _clock(pl_module: pl.LightningModule) -> float:
    if pl_module.device.type == "cuda":
        torch.cuda.synchronize(pl_module.device)
    return time.perf_counter()


def _positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class EpochSpeed(pl.Callback):
    """``time/epoch_seconds``, the wall time of each training epoch with the validation at its end, and
    ``time/samples_per_second``, the training examples per second of the epoch's training part.

    Lightning's ``ThroughputMonitor`` logs per step, warns without a FLOP count and synchronises the GPU after every
    batch; this reads the clock at the ends of the epoch and of its validation only.
    """

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._samples, self._validation_seconds = 0, 0.0
        self._start = _clock(pl_module)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.on_train_epoch_start(trainer, pl_module)  # a run resumed mid-epoch starts no epoch: time its rest

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._samples += extract_batch_size(batch)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validation_start = _clock(pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validation_seconds += _clock(pl_module) - self._validation_start

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds = _clock(pl_module) - self._start
        training_seconds = seconds - self._validation_seconds
        rate = {"time/samples_per_second": self._samples / training_seconds} if training_seconds > 0 else {}
        log_to_loggers(trainer, {"time/epoch_seconds": seconds, **rate})


class GradientNorm(pl.Callback):
    """``train/grad_norm``: the 2-norm of all gradients as one vector (the norm of the parameters' gradient norms, as
    Lightning's ``grad_norm`` computes it, read on the host once instead of once a parameter), before
    ``gradient_clip_val`` clips it, on the steps the task logs ``train/loss_step`` at (``is_logging_step``, every
    ``trainer.log_every_n_steps``) and computed on those only."""

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        if not is_logging_step(trainer):
            return
        gradients = [parameter.grad for parameter in pl_module.parameters() if parameter.grad is not None]
        if gradients:
            log_to_loggers(trainer, {"train/grad_norm": torch.linalg.vector_norm(norms(gradients)).item()})


def histogram(values: torch.Tensor, bins: int = HISTOGRAM_BINS) -> dict[str, Any] | None:
    """The histogram of the finite values of a tensor (None if it has none), in ``bins`` equal bins between the
    least and the greatest, as the keyword arguments of ``SummaryWriter.add_histogram_raw``; computed with torch
    where the tensor lives (``add_histogram`` copies it to NumPy in float64 first)."""
    values = values.detach().flatten().float()
    low, high, total, squares = torch.stack([*torch.aminmax(values), values.sum(), values.dot(values)]).tolist()
    if not math.isfinite(total + squares):  # some values are nan or infinite
        values = values[torch.isfinite(values)]
        if not values.numel():
            return None
        low, high, total, squares = torch.stack([*torch.aminmax(values), values.sum(), values.dot(values)]).tolist()
    start, end = (low, high) if high > low else (low - 0.5, high + 0.5)  # NumPy's range for one distinct value
    counts = torch.histc(values, bins=bins, min=start, max=end)
    return {
        "min": low,
        "max": high,
        "num": values.numel(),
        "sum": total,
        "sum_squares": squares,
        # TensorBoard reads each count with the limit on its right: an empty bucket up to ``start`` comes first
        "bucket_limits": [start + (end - start) * index / bins for index in range(bins + 1)],
        "bucket_counts": [0.0, *counts.tolist()],
    }


def dead_fraction(outputs: torch.Tensor) -> torch.Tensor:
    """The fraction of units whose output is never positive in the batch (N, C, ...): a unit is a channel of a
    feature map, or a feature of a vector (dim 1 both)."""
    alive = outputs.gt(0).transpose(0, 1).reshape(outputs.shape[1], -1).any(dim=1)
    return 1 - alive.float().mean()


class LayerStatistics(pl.Callback):
    """At the first optimizer step and then every ``every_n_steps``, the statistics the notes watch per layer, under
    the step numbers the loggers give the steps' losses. With ``every_n_steps`` a multiple of
    ``trainer.log_every_n_steps`` these are steps the loggers write anyway, and the only ones whose values are read
    on the host (``is_logging_step``).

    * ``activations/<layer>/mean``, ``activations/<layer>/std`` and the histogram ``activations/<layer>``: the
      outputs of the network's conv, linear, recurrent (the hidden states) and activation modules on the training
      batch;
    * ``dead_fraction/<layer>``: after ReLU-family activations, the fraction of units (channels of a feature map,
      features of a vector: dim 1) whose output is never positive anywhere in the batch;
    * histograms ``weights/<param>`` and ``gradients/<param>``, before the update and before any clipping;
    * ``update_ratio/<param>``: ``||w_after - w_before|| / ||w_before||``, the step the optimizer took relative to
      the weights (around 1e-3 is healthy, the notes say); tensors that are all zero are left out.

    The forward hooks exist during the logging steps only, so the other steps pay nothing.
    """

    def __init__(self, every_n_steps: int = 100) -> None:
        _positive_int("every_n_steps", every_n_steps)
        self.every_n_steps = every_n_steps
        self._writer: SummaryWriter | None = None
        self._handles: list[RemovableHandle] = []
        # by tag, what the step writes (a later forward pass of the step replaces its values): a scalar, or the
        # arguments of a histogram
        self._values: dict[str, float | dict[str, Any]] = {}
        self._before: dict[str, torch.Tensor] = {}

    def _scalar(self, tag: str, value: float) -> None:
        self._values[tag] = value

    def _histogram(self, tag: str, values: torch.Tensor) -> None:
        if (arguments := histogram(values)) is not None:
            self._values[tag] = arguments

    def _hook(self, name: str, rectifier: bool) -> Any:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, tuple):  # a recurrent layer's (outputs, final state)
                output = output[0]
            if not isinstance(output, torch.Tensor) or not output.is_floating_point():
                return
            values = output.detach().float()
            stats = [values.mean(), values.std(), *([dead_fraction(values)] if rectifier and values.dim() > 1 else [])]
            # computed now: an in-place activation after this layer overwrites its output
            mean, std, *dead = torch.stack(stats).tolist()
            self._scalar(f"activations/{name}/mean", mean)
            self._scalar(f"activations/{name}/std", std)
            if dead:
                self._scalar(f"dead_fraction/{name}", dead[0])
            self._histogram(f"activations/{name}", values)

        return torch.compiler.disable(record)  # under compile=true: run as it is, not traced into the graph

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # with accumulated gradients the hooks stay on from the step's first batch to its last
        step = trainer.global_step
        if self._handles or (step and (step + 1) % self.every_n_steps) or (writer := tensorboard(trainer)) is None:
            return
        self._writer, self._step = writer, trainer.global_step
        for name, module in _net(pl_module).named_modules():
            if isinstance(module, LAYERS + ACTIVATIONS):
                self._handles.append(module.register_forward_hook(self._hook(name, isinstance(module, RECTIFIERS))))

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        if self._writer is None or self._before:  # an optimizer may evaluate its closure more than once per step
            return
        for name, parameter in _net(pl_module).named_parameters():
            if parameter.requires_grad:
                self._before[name] = parameter.detach().clone()
                self._histogram(f"weights/{name}", parameter)
                if parameter.grad is not None:
                    self._histogram(f"gradients/{name}", parameter.grad)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._writer is None or not self._before:  # not a logging step, or gradients still accumulate
            return
        for handle in self._handles:
            handle.remove()
        parameters = dict(_net(pl_module).named_parameters())
        for name, before in self._before.items():
            change = torch.linalg.vector_norm(parameters[name].detach() - before)
            ratio = (change / torch.linalg.vector_norm(before)).item()
            if math.isfinite(ratio):  # not for a tensor of zeros
                self._scalar(f"update_ratio/{name}", ratio)
        for tag, value in self._values.items():
            if isinstance(value, dict):
                self._writer.add_histogram_raw(tag, global_step=self._step, **value)
            else:
                self._writer.add_scalar(tag, value, self._step)
        self._writer, self._handles, self._values, self._before = None, [], {}, {}


def enlarged(images: torch.Tensor, scale: int) -> torch.Tensor:
    """``images`` (..., H, W) enlarged ``scale`` times by nearest neighbour: each pixel a block of scale x scale."""
    return images.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)


def filter_grid(weight: torch.Tensor, tile: int = 32) -> torch.Tensor:
    """A conv layer's filters (out, in, kh, kw) as a (3, H, W) image grid, each filter scaled to [0, 1] on its own
    and enlarged (nearest neighbour) to about ``tile`` pixels a side.

    Filters over three input channels are RGB tiles, eight to a row; otherwise every input channel is a grey tile,
    one filter to a row (a one-channel layer's filters eight to a row).
    """
    filters = weight.detach().float().cpu()
    low = filters.amin(dim=(1, 2, 3), keepdim=True)
    high = filters.amax(dim=(1, 2, 3), keepdim=True)
    filters = (filters - low) / (high - low).clamp_min(torch.finfo(filters.dtype).tiny)
    filters = enlarged(filters, max(1, math.ceil(tile / max(filters.shape[-2:]))))
    channels = filters.shape[1]
    if channels == 3:
        return make_grid(filters, nrow=8, padding=1, pad_value=1.0)
    return make_grid(filters.flatten(0, 1).unsqueeze(1), nrow=channels if channels > 1 else 8, padding=1, pad_value=1.0)


def epoch_is_due(trainer: pl.Trainer, every_n_epochs: int) -> bool:
    """Whether the epoch under way is an ``every_n_epochs``-th one or the last (``trainer.max_epochs``)."""
    epoch = trainer.current_epoch + 1
    return epoch % every_n_epochs == 0 or epoch == trainer.max_epochs


class FilterImages(pl.Callback):
    """``filters/<layer>``: the first 2-d conv layer's filters (``filter_grid``) when training starts, after every
    ``every_n_epochs``-th epoch and the last (``trainer.max_epochs``), and when training ends sooner (early
    stopping). Networks without one (the recurrent models) log nothing."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        _positive_int("every_n_epochs", every_n_epochs)
        self.every_n_epochs = every_n_epochs
        self._logged_step: int | None = None  # the global step the filters were last logged at

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if epoch_is_due(trainer, self.every_n_epochs):
            self._log(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._logged_step != trainer.global_step:
            self._log(trainer, pl_module)

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = tensorboard(trainer)
        first = next(((n, m) for n, m in _net(pl_module).named_modules() if isinstance(m, nn.Conv2d)), None)
        if writer is not None and first is not None:
            writer.add_image(f"filters/{first[0]}", filter_grid(first[1].weight), trainer.global_step)
        self._logged_step = trainer.global_step


class _ValidationPredictions(pl.Callback, ABC):
    """Reads the scores a ``Classifier``'s ``validation_step`` returns (not in the sanity check), and passes each
    batch's inputs, labels and predicted classes to ``_update``; ``_write`` logs when the validation ends. Other
    modules (regression, language models, multi-label) and runs without TensorBoard are skipped. In a distributed
    run every process reads its share of the validation set and ``_write`` runs in each (for metrics that sync
    over the processes) with the writer in the first process only, None in the others.

    While fitting, the validations of every ``every_n_epochs``-th epoch and of the last one (``trainer.max_epochs``)
    are read; ``trainer.validate`` always is."""

    _active = False
    _writer: SummaryWriter | None = None

    def __init__(self, every_n_epochs: int = 1) -> None:
        _positive_int("every_n_epochs", every_n_epochs)
        self.every_n_epochs = every_n_epochs

    def _due(self, trainer: pl.Trainer) -> bool:
        if trainer.sanity_checking:
            return False
        if trainer.state.fn != TrainerFn.FITTING:  # trainer.validate
            return True
        return epoch_is_due(trainer, self.every_n_epochs)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._active = isinstance(pl_module, Classifier) and self._due(trainer) and logs_to_tensorboard(trainer)
        if not self._active:
            return
        self._writer = tensorboard(trainer)
        names = getattr(trainer.datamodule, "class_names", None)
        self._class_names = list(names) if names else [str(c) for c in range(pl_module.hparams.num_classes)]
        self._reset(pl_module)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._active:  # the scores of each input (of its K crops: the log of their averaged softmax)
            inputs, labels = batch
            self._update(inputs, labels, outputs.argmax(dim=-1))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._active:
            self._write(self._writer, trainer.global_step)

    @abstractmethod
    def _reset(self, pl_module: pl.LightningModule) -> None:
        """Start reading a validation."""

    @abstractmethod
    def _update(self, inputs: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor) -> None:
        """Read one batch."""

    @abstractmethod
    def _write(self, writer: SummaryWriter | None, step: int) -> None:
        """Log what the validation showed."""


@cache
def _font(size: int = 11) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's own font in ``size`` pixels (its fixed bitmap font where Pillow was built without FreeType)."""
    return ImageFont.load_default(size=size)


def _fit(text: str, width: float, face: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> str:
    """``text`` cut at the end until it is at most ``width`` pixels wide."""
    while text and face.getlength(text) > width:
        text = text[:-1]
    return text


def confusion_matrix_image(matrix: torch.Tensor, class_names: list[str]) -> np.ndarray:
    """The counts of a confusion matrix (rows: true class, columns: predicted) as an RGB image (H, W, 3) of bytes,
    each cell coloured by its share of the row, so that classes of any size compare. Past ``ANNOTATED_CLASSES``
    classes the counts and the class names are left out, which would not be readable.

    Drawn straight into pixels with Pillow: a matplotlib figure of it took 50 ms of CPU, which on a small machine
    slowed the training it was drawn beside by several per cent."""
    classes = len(class_names)
    annotated = classes <= ANNOTATED_CLASSES
    cell = min(28, max(1, 800 // classes))  # pixels a side
    shares = matrix.float() / matrix.sum(dim=1, keepdim=True).clamp_min(1)
    colours = (WHITE + shares[..., None] * (BLUE - WHITE)).round().to(torch.uint8)  # (classes, classes, RGB)
    cells = enlarged(colours.permute(2, 0, 1), cell).permute(1, 2, 0)
    face = _font()
    names = [_fit(name, 120, face) for name in class_names] if annotated else []
    name_width = math.ceil(max(map(face.getlength, names))) + 6 if annotated else 0
    right = f"{int(matrix.trace())} of {int(matrix.sum())} validation examples right"
    lines = [right, "rows: true class,", "columns: predicted class"]
    header = 4 + 14 * len(lines)
    width = max(name_width + classes * cell, math.ceil(max(map(face.getlength, lines)))) + 8
    image = Image.new("RGB", (width, header + name_width + classes * cell + 4), "white")
    left, top = name_width + 4, header + name_width
    image.paste(Image.fromarray(cells.numpy()), (left, top))
    draw = ImageDraw.Draw(image)
    for line, text in enumerate(lines):
        draw.text((4, 4 + 14 * line), text, fill="black", font=face)
    if annotated:
        columns = Image.new("L", (name_width, classes * cell), 0)  # the column names, drawn across and turned up
        written = ImageDraw.Draw(columns)
        for index, name in enumerate(names):
            middle = index * cell + cell / 2
            draw.text((left - 3, top + middle), name, fill="black", font=face, anchor="rm")
            written.text((3, middle), name, fill=255, font=face, anchor="lm")
        image.paste("black", (left, header), columns.rotate(90, expand=True))
        for (row, column), count in np.ndenumerate(matrix.numpy()):
            if count:  # empty cells stay blank: easier to read
                colour = "white" if shares[row, column] > 0.5 else "black"
                centre = (left + column * cell + cell / 2, top + row * cell + cell / 2)
                draw.text(centre, str(count), fill=colour, font=_font(9), anchor="mm")
    return np.asarray(image)


class ConfusionMatrix(_ValidationPredictions):
    """``val/confusion_matrix``: the validation set's confusion matrix (``MulticlassConfusionMatrix``) as an image
    (``every_n_epochs``: see the base class); ``matrix`` keeps the last counts read."""

    def _reset(self, pl_module: pl.LightningModule) -> None:
        self.matrix = MulticlassConfusionMatrix(pl_module.hparams.num_classes).to(pl_module.device)

    def _update(self, inputs: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor) -> None:
        self.matrix.update(predictions, labels)

    def _write(self, writer: SummaryWriter | None, step: int) -> None:
        matrix = self.matrix.compute().cpu()  # summed over the processes of a distributed run, in each of them
        if writer is not None:
            image = confusion_matrix_image(matrix, self._class_names)
            writer.add_image("val/confusion_matrix", image, step, dataformats="HWC")


def display_images(inputs: torch.Tensor) -> torch.Tensor:
    """Network inputs as images (N, 1 or 3, H, W) in [0, 1], each min-max scaled on its own (which undoes any
    normalisation up to contrast): 3-channel inputs as RGB, others by their first channel in grey, sequences
    (N, T, F) as T x F grey images, vectors as 1 x F strips, K crops (N, K, C, H, W) by their first."""
    images = inputs.detach().float()
    if images.dim() == 5:
        images = images[:, 0]
    while images.dim() < 4:
        images = images.unsqueeze(1)
    if images.shape[1] != 3:
        images = images[:, :1]
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (high - low).clamp_min(torch.finfo(images.dtype).tiny)


def misclassified_image(
    images: torch.Tensor, predicted: list[int], true: list[int], class_names: list[str], columns: int = 8
) -> np.ndarray:
    """A grid of images (N, 1 or 3, H, W) in [0, 1], each under its predicted class and its true one, as an RGB
    image (H, W, 3) of bytes; images under 96 pixels wide are enlarged a whole number of times to at least that."""
    columns = min(columns, len(images))
    pixels = (images.expand(-1, 3, -1, -1) * 255).round().to(torch.uint8)
    pixels = enlarged(pixels, math.ceil(96 / images.shape[-1])).permute(0, 2, 3, 1).numpy()
    height, width, label = pixels.shape[1], pixels.shape[2], 30  # two lines of labels above each image
    rows = math.ceil(len(images) / columns)
    image = Image.new("RGB", (columns * (width + 8) + 8, rows * (height + label + 8) + 8), "white")
    draw, face = ImageDraw.Draw(image), _font()
    for index, (picture, guess, answer) in enumerate(zip(pixels, predicted, true, strict=True)):
        row, column = divmod(index, columns)
        x, y = 8 + column * (width + 8), 8 + row * (height + label + 8)
        draw.text((x, y), _fit(class_names[guess], width, face), fill="black", font=face)
        draw.text((x, y + 14), _fit(f"true: {class_names[answer]}", width, face), fill="dimgray", font=face)
        image.paste(Image.fromarray(picture), (x, y + label))
    return np.asarray(image)


class MisclassifiedImages(_ValidationPredictions):
    """``val/misclassified``: the first ``max_images`` validation examples the classifier gets wrong (the same ones
    from epoch to epoch while it keeps getting them wrong), labelled with the predicted and the true class."""

    def __init__(self, max_images: int = 16, every_n_epochs: int = 1) -> None:
        super().__init__(every_n_epochs)
        _positive_int("max_images", max_images)
        self.max_images = max_images

    def _reset(self, pl_module: pl.LightningModule) -> None:
        self.images: list[torch.Tensor] = []
        self.predicted: list[int] = []
        self.true: list[int] = []

    def _update(self, inputs: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor) -> None:
        room = self.max_images - len(self.true)
        if room <= 0:
            return
        wrong = (predictions != labels).nonzero().squeeze(1)[:room]
        if wrong.numel():
            self.images.extend(display_images(inputs[wrong]).cpu())
            self.predicted.extend(predictions[wrong].tolist())
            self.true.extend(labels[wrong].tolist())

    def _write(self, writer: SummaryWriter | None, step: int) -> None:
        if writer is not None and self.true:
            image = misclassified_image(torch.stack(self.images), self.predicted, self.true, self._class_names)
            writer.add_image("val/misclassified", image, step, dataformats="HWC")
