"""The zoo's ImageNet networks side by side, after Canziani, Paszke & Culurciello 2017 ("An Analysis of Deep Neural
Network Models for Practical Applications"): top-1 accuracy against multiply-adds with the parameters as the
marker's area, and inference time and peak memory per image measured on the machine at hand.

An ImageNet network is a registered model whose class's ``native_input_size`` is three channels of 224x224 or more
(299 for Inception-v3), so a family added to the zoo joins the comparison by itself. Parameters and multiply-adds are
``models.summary.summarize``'s. Top-1 accuracy is torchvision's weights metadata (``DEFAULT`` weights, read offline)
for the networks whose torchvision weights ours load with identical outputs (``models.TORCHVISION_NAMES``, checked
by the zoo's round-trip tests), else the figure of the network's paper (``PAPER_TOP1``), else none.
"""

from __future__ import annotations

import datetime
import fnmatch
import inspect
import io
import os
import platform
import statistics
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode

import models
from models.summary import summarize
from training.checkpoint_io import write_record
from training.config import UserError
from training.timing import synchronize

IMAGENET_SIDE = 224  # the smallest native side of an ImageNet network
# Top-1 accuracy (%) on the ILSVRC-2012 validation set, single model, of the zoo's networks that torchvision's weights
# do not cover, as their papers print it (100 - the printed top-1 error), with the table it is read from.
PAPER_TOP1: dict[str, tuple[float, str]] = {
    "alexnet": (59.3, "Krizhevsky et al. 2012, Table 2 (1 CNN, val top-1 error 40.7%)"),
    "zfnet": (61.6, "Zeiler & Fergus 2014, Table 2 (1 convnet as Fig. 3, val top-1 error 38.4%)"),
    "preact_resnet152": (78.9, "He et al. 2016b, Table 5 (pre-activation, 320x320 test crop, top-1 error 21.1%)"),
    "preact_resnet200": (79.3, "He et al. 2016b, Table 5 (pre-activation, 320x320 test crop, top-1 error 20.7%)"),
    "xception": (79.0, "Chollet 2017, Table 1 (single crop, top-1 accuracy 0.790)"),
}
TORCHVISION_SOURCE = "torchvision DEFAULT weights"
NO_FIGURE = "no figure"
FIGSIZE = (15.0, 6.5)  # inches
DPI = 100  # so the PNG is 1500x650 pixels
MEGABYTE = 2**20
AREA = 5e-6  # a marker's area in points^2 per parameter: VGG-19's 144M parameters 718


def imagenet_models() -> list[str]:
    """The registered models whose class's native input is 3 channels of at least 224x224, in the registry's order."""
    names = []
    for name in models.list_models():
        cls = inspect.signature(models.get_model_builder(name)).return_annotation
        channels, height, width = getattr(cls, "native_input_size", (0, 0, 0))
        if channels == 3 and min(height, width) >= IMAGENET_SIDE:
            names.append(name)
    return names


def select_models(spec: str) -> list[str]:
    """The ImageNet networks named by ``spec``: comma-separated names or fnmatch patterns (``resnet*``), each
    matching at least one of them."""
    available = imagenet_models()
    chosen: list[str] = []
    for item in (part.strip() for part in spec.split(",")):
        matched = fnmatch.filter(available, item)
        if not matched:
            hint = models.did_you_mean(item, available)
            raise UserError(
                f"models: {item!r} names no ImageNet network of the zoo; {hint}accepted: {', '.join(available)}"
            )
        chosen += [name for name in matched if name not in chosen]
    return chosen


def top1(name: str) -> tuple[float | None, str]:
    """The top-1 accuracy (%) of the network ``name`` and where it comes from (``NO_FIGURE`` when neither source has
    one)."""
    if name in models.TORCHVISION_NAMES:
        weights = torchvision.models.get_model_weights(models.TORCHVISION_NAMES[name]).DEFAULT
        return float(weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]), f"{TORCHVISION_SOURCE} ({weights.name})"
    if name in PAPER_TOP1:
        return PAPER_TOP1[name]
    return None, NO_FIGURE


class PeakTensorMemory(TorchFunctionMode):
    """The largest number of bytes held at once by the tensors that the torch functions called under it create:
    each new storage counted from the call that returns it until it is freed (the weights, buffers and inputs named
    in ``known`` are left out). What a forward pass keeps alive between layers; a function's internal scratch
    memory is not seen."""

    def __init__(self, known: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self._known = {id(tensor.untyped_storage()) for tensor in known}
        self._live: dict[int, int] = {}
        self.current = self.peak = 0

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key)

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        result = func(*args, **(kwargs or {}))
        for tensor in result if isinstance(result, tuple | list) else (result,):
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key = id(storage)
            if key not in self._known and key not in self._live:
                self._live[key] = storage.nbytes()
                self.current += storage.nbytes()
                weakref.finalize(storage, self._free, key)
        self.peak = max(self.peak, self.current)
        return result


def peak_memory(net: nn.Module, inputs: torch.Tensor) -> int:
    """Bytes of memory at the peak of one inference pass beyond the weights and the input: on CUDA the caching
    allocator's peak (``torch.cuda.max_memory_allocated``) less what was allocated before; on the CPU, which has no
    allocator statistics, ``PeakTensorMemory``'s count of the tensors alive at once."""
    if inputs.device.type == "cuda":
        synchronize(inputs.device)
        torch.cuda.reset_peak_memory_stats(inputs.device)
        before = torch.cuda.memory_allocated(inputs.device)
        with torch.inference_mode():
            net(inputs)
        synchronize(inputs.device)
        return torch.cuda.max_memory_allocated(inputs.device) - before
    counter = PeakTensorMemory([*net.parameters(), *net.buffers(), inputs])
    with torch.inference_mode(), counter:
        net(inputs)
    return counter.peak


def seconds_per_pass(net: nn.Module, inputs: torch.Tensor, repeats: int) -> float:
    """The median of ``repeats`` timed inference passes (the caller has run one already: the warm-up)."""
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            synchronize(inputs.device)
            start = time.perf_counter()
            net(inputs)
            synchronize(inputs.device)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass
class Measured:
    """One network's row: its size, accuracy and, per batch size, milliseconds and megabytes per image."""

    name: str
    parameters: int
    macs: int
    top1: float | None
    source: str
    milliseconds: dict[int, float]
    megabytes: dict[int, float]

    @property
    def from_paper(self) -> bool:
        return self.top1 is not None and not self.source.startswith(TORCHVISION_SOURCE)


def measure(name: str, batch_sizes: Sequence[int], repeats: int, device: torch.device) -> Measured:
    """Build ``name`` (random weights, eval mode) on ``device``, count it with ``summarize`` and, for each batch
    size, run one pass measuring its peak memory (also the warm-up) and ``repeats`` timed passes."""
    torch.manual_seed(0)
    net = models.create_model(name).to(device).eval()
    summary = summarize(net, net.native_input_size)
    accuracy, source = top1(name)
    milliseconds, megabytes = {}, {}
    for batch in batch_sizes:
        inputs = torch.randn(batch, *net.native_input_size, device=device)
        megabytes[batch] = peak_memory(net, inputs) / batch / MEGABYTE
        milliseconds[batch] = seconds_per_pass(net, inputs, repeats) / batch * 1000
        del inputs
    return Measured(name, summary.parameters, summary.macs, accuracy, source, milliseconds, megabytes)


def machine(device: torch.device) -> str:
    """The machine the times were taken on, in words."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return (
        f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    )


def markdown(rows: Sequence[Measured], batch_sizes: Sequence[int], repeats: int, device: torch.device) -> str:
    """The table of ``rows`` with a header saying when, where and how it was measured."""
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    header = [
        "# The zoo's ImageNet networks compared",
        "",
        f"Measured by `python scripts/compare_zoo.py` on {stamp}: {machine(device)}, torch {torch.__version__}.",
        "Parameters and multiply-adds (GMACs) are `models.summary.summarize`'s at each network's native input; the",
        "parameters count the auxiliary classifiers of GoogLeNet and Inception-v3, which inference does not run.",
        "Top-1 is ImageNet-1K validation accuracy: torchvision's metadata of its `DEFAULT` weights (some trained",
        "with a newer recipe than the paper's) for the networks whose torchvision weights ours load with identical",
        "outputs, else the paper's printed figure (the table named), else none.",
        f"Time per image: the median of {repeats} timed inference passes of a batch of random images (after a",
        "warm-up pass), divided by the batch size.",
        f"Memory per image: {_memory_words(device)}, at the peak of one inference pass beyond the weights and",
        "the input, divided by the batch size.",
    ]
    if device.type == "cpu":
        header.append("The CPU is shared with other work and noisy: read the times as rough, not as benchmarks.")
    columns = ["network", "parameters", "GMACs", "top-1 (%)", "top-1 from"]
    columns += [f"ms/image, batch {batch}" for batch in batch_sizes]
    columns += [f"MB/image, batch {batch}" for batch in batch_sizes]
    lines = [*header, "", f"| {' | '.join(columns)} |", f"|{'---|' * len(columns)}"]
    for row in rows:
        accuracy = NO_FIGURE if row.top1 is None else f"{row.top1:.3f}".rstrip("0").rstrip(".")
        cells = [f"`{row.name}`", f"{row.parameters:,}", f"{row.macs / 1e9:.3f}", accuracy, row.source]
        cells += [f"{row.milliseconds[batch]:.2f}" for batch in batch_sizes]
        cells += [f"{row.megabytes[batch]:.2f}" for batch in batch_sizes]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def _memory_words(device: torch.device) -> str:
    if device.type == "cuda":
        return "the CUDA caching allocator's peak (`torch.cuda.max_memory_allocated`)"
    return (
        "the bytes of the tensors that torch functions return, alive at once\n(counted by a `TorchFunctionMode` "
        "from each tensor's creation to its release; a kernel's internal scratch memory is not seen)"
    )


def plain_numbers(axis: Any) -> None:
    """Label a log axis's ticks 0.5, 2, 300 rather than powers of ten."""
    from matplotlib.ticker import FuncFormatter

    formatter = FuncFormatter(lambda value, _: f"{value:g}")
    axis.set_major_formatter(formatter)
    axis.set_minor_formatter(formatter)


def figure(rows: Sequence[Measured], batch_sizes: Sequence[int], device: torch.device) -> bytes:
    """The two panels as a PNG of ``FIGSIZE`` at ``DPI``: accuracy against multiply-adds, and time against memory."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    left, right = fig.subplots(1, 2)
    plotted = [row for row in rows if row.top1 is not None]
    for row in plotted:
        colour = "tab:orange" if row.from_paper else "tab:blue"
        left.scatter(
            row.macs / 1e9, row.top1, s=row.parameters * AREA, alpha=0.6, linewidths=1.5,
            facecolors="none" if row.from_paper else colour, edgecolors=colour,
        )  # fmt: skip
        left.annotate(row.name, (row.macs / 1e9, row.top1), fontsize=7, xytext=(3, 3), textcoords="offset points")
    left.set_xscale("log")
    plain_numbers(left.xaxis)
    left.set(xlabel="multiply-adds per image (G, log scale)", ylabel="ImageNet top-1 accuracy (%)")
    left.set_title("Accuracy against compute (marker area: parameters)")
    handles = [
        Line2D([], [], marker="o", ls="", color="tab:blue", label="torchvision weights' metadata"),
        Line2D([], [], marker="o", ls="", mfc="none", color="tab:orange", label="paper's table (hollow)"),
        *(
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                color="grey",
                alpha=0.6,
                ms=(count * AREA) ** 0.5,
                label=f"{count / 1e6:g}M params",
            )
            for count in (10e6, 50e6, 100e6)
        ),
    ]
    left.legend(handles=handles, loc="lower right", fontsize=8, labelspacing=1.2)
    missing = [row.name for row in rows if row.top1 is None]
    if missing:
        left.text(0.01, 0.01, f"no figure: {', '.join(missing)}", transform=left.transAxes, fontsize=6, wrap=True)
    markers = "os^Dv"
    for row in rows:
        times = [row.milliseconds[batch] for batch in batch_sizes]
        memory = [row.megabytes[batch] for batch in batch_sizes]
        (line,) = right.plot(times, memory, lw=0.8, alpha=0.6)
        for index, (seconds, megabytes) in enumerate(zip(times, memory, strict=True)):
            right.scatter(seconds, megabytes, marker=markers[index % len(markers)], color=line.get_color())
        right.annotate(row.name, (times[0], memory[0]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    right.set(xscale="log", yscale="log", xlabel="inference time per image (ms, log scale)")
    plain_numbers(right.xaxis)
    plain_numbers(right.yaxis)
    right.set_ylabel("peak memory per image beyond the weights (MB, log scale)")
    right.set_title(f"Inference on {machine(device)}")
    right.legend(
        handles=[
            Line2D([], [], marker=markers[index % len(markers)], ls="", color="black", label=f"batch {batch}")
            for index, batch in enumerate(batch_sizes)
        ],
        fontsize=8,
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def compare_zoo(
    names: Sequence[str],
    batch_sizes: Sequence[int],
    repeats: int,
    device: torch.device,
    png: Path,
    table: Path,
    overwrite: bool = False,
    progress: Callable[[str], None] = print,
) -> list[Measured]:
    """Measure ``names`` and write the picture to ``png`` and the Markdown table to ``table``; an existing file is
    refused before anything is measured unless ``overwrite``."""
    for path in (png, table):
        if path.exists() and not overwrite:
            raise UserError(f"{path} already exists; nothing was written (overwrite=true replaces it)")
    rows = []
    for name in names:
        rows.append(measure(name, batch_sizes, repeats, device))
        cells = ", ".join(f"batch {b}: {rows[-1].milliseconds[b]:.1f} ms/image" for b in batch_sizes)
        progress(f"{name}: {cells}")
    write_record(png, figure(rows, batch_sizes, device), kept="nothing else was changed")
    write_record(table, markdown(rows, batch_sizes, repeats, device), kept="the picture is written")
    progress(f"wrote {png} and {table}")
    return rows
