"""Exporting a trained network for use without this project: ``scripts/export.py ckpt_path=... format=...``.

Four formats, each of the network alone (the LightningModule's ``net``, in eval mode: GoogLeNet's auxiliary heads
are not part of its output), with the weights that evaluation uses (the EMA average where the run kept one):

* ``state_dict``: ``torch.save(net.state_dict())``, keys exactly as the network names them, which
  ``models.create_model(name, pretrained=<file>)`` loads;
* ``safetensors``: the same tensors as a safetensors file, with the model name, input shape and class names in its
  metadata;
* ``torchscript``: ``torch.jit.trace`` of the network, checked on a second batch size, saved with ``torch.jit.save``;
  ``torch.jit.load`` runs it without the model's Python code;
* ``onnx``: ``torch.onnx.export`` (the ``torch.export``-based exporter) with a dynamic batch axis: input ``images``
  (N, C, H, W), output ``logits`` (N, classes); preprocessing is not included (``training.inference``).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import safetensors.torch
import torch
from omegaconf import DictConfig
from rich.console import Console
from torch import nn

from training.config import UserError, require_extra
from training.inference import load_model, require

console = Console(soft_wrap=True)

SUFFIXES = {
    "state_dict": ".state_dict.pt",
    "safetensors": ".safetensors",
    "torchscript": ".torchscript.pt",
    "onnx": ".onnx",
}
FORMATS = tuple(SUFFIXES)
EXAMPLE_BATCH = 2  # not 1, which torch.export would treat as a fixed size


def _state_dict(net: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().contiguous() for key, value in net.state_dict().items()}


def _torchscript(net: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        # TorchScript is the format asked for, deprecated or not. The input checks (the network's and those of
        # torch's own layers) run on the example while tracing and become constants of the trace (TracerWarning):
        # they depend on the input's shape only, and the trace is checked against the network on two batch sizes
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+.* is deprecated")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.trace(net, example, check_inputs=[(example,), (example[:1].repeat(3, 1, 1, 1),)])
        torch.jit.save(traced, str(path))


def _onnx(net: nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.onnx.export(
        net,
        (example,),
        str(path),
        dynamo=True,
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        input_names=["images"],
        output_names=["logits"],
        external_data=False,  # one self-contained file
        verbose=False,  # no progress lines of the exporter's own
    )


def export_model(
    net: nn.Module,
    format: str,
    path: str | Path,
    input_shape: tuple[int, ...],
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``net`` (put in eval mode) to ``path`` in ``format``; ``input_shape`` is one input's (C, H, W).

    The file is written beside ``path`` and renamed into place, so a failed export leaves nothing half-written.
    ``metadata`` goes into a safetensors file's header.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; accepted: {', '.join(FORMATS)}")
    path = Path(path)
    net = net.eval()
    parameter = next(net.parameters())
    example = torch.randn(EXAMPLE_BATCH, *input_shape, device=parameter.device, dtype=parameter.dtype)
    writers: dict[str, Callable[[Path], None]] = {
        "state_dict": lambda target: torch.save(_state_dict(net), target),
        "safetensors": lambda target: target.write_bytes(safetensors.torch.save(_state_dict(net), metadata=metadata)),
        "torchscript": lambda target: _torchscript(net, example, target),
        "onnx": lambda target: _onnx(net, example, target),
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        writers[format](temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def default_path(ckpt_path: str | Path, format: str) -> Path:
    """Where an export goes unless ``out`` says otherwise: beside the checkpoint, ``best.ckpt`` -> ``best.onnx``."""
    ckpt_path = Path(ckpt_path)
    return ckpt_path.with_name(ckpt_path.stem + SUFFIXES[format])


def export(cfg: DictConfig) -> Path:
    """Export the network of the checkpoint ``cfg.ckpt_path`` in ``cfg.format`` to ``cfg.out`` (default: beside the
    checkpoint); an existing file is replaced only with ``cfg.overwrite``, and the checkpoint itself never."""
    require(cfg, "ckpt_path", "format")
    if cfg.format not in FORMATS:
        raise UserError(f"format: expected one of {', '.join(FORMATS)}, got {cfg.format!r}")
    if cfg.format == "onnx":
        require_extra("export", ["onnx", "onnxscript"], "format=onnx")
    out = Path(str(cfg.out)) if cfg.get("out") else default_path(cfg.ckpt_path, cfg.format)
    if out.exists() and Path(str(cfg.ckpt_path)).exists() and os.path.samefile(out, str(cfg.ckpt_path)):
        raise UserError(f"out: {out} is the checkpoint being exported, {cfg.ckpt_path}; nothing was written")
    if out.exists() and not cfg.get("overwrite"):
        raise UserError(f"{out} already exists; nothing was written (overwrite=true replaces it)")
    if not out.parent.is_dir():
        raise UserError(f"out: no such folder: {out.parent}")
    model = load_model(str(cfg.ckpt_path))
    shape = (model.in_channels, *model.input_size)
    metadata = {
        "model": str(model.run_config["model"]["name"]),
        "input_shape": json.dumps(shape),
        "class_names": json.dumps(model.class_names),
    }
    try:
        export_model(model.net, cfg.format, out, shape, metadata)
    except OSError as err:
        raise UserError(f"could not write {out}: {err.strerror or err}") from err
    console.print(f"{cfg.format} export of {cfg.ckpt_path} written to {out}")
    return out
