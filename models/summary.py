"""Per-layer summary of a model: output shape, parameters, activations and multiply-adds.

Compute is counted by ``torch.utils.flop_counter`` (convolutions and matrix products; one
multiply-add is two FLOPs), the way torchvision's ``GFLOPS`` metadata counts it. The forward
activation memory follows the lecture notes' accounting for VGG16: the input plus the output of
every conv, pooling and fully-connected layer, 4 bytes a value; element-wise layers (activations,
dropout, normalisation) and adaptive pools that keep the shape (torchvision's 7x7 pool of VGG at
224x224, an identity) are not counted again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

POOLS = (nn.MaxPool2d, nn.AvgPool2d)
ADAPTIVE_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int
    activations: int
    macs: int


@dataclass
class ModelSummary:
    rows: list[LayerRow]
    input_shape: tuple[int, ...]
    parameters: int
    macs: int
    activations: int

    @property
    def activation_megabytes(self) -> float:
        """Forward activation memory per image in MB (float32, 2**20 bytes)."""
        return self.activations * 4 / 2**20


def scaled(count: int) -> str:
    """``15.47 G``, ``416.52 K``: the count in the largest unit that keeps it at least 1."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.2f} {unit}"
    return str(count)


def summarize(model: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> ModelSummary:
    """Run one input of ``input_shape`` (an image's C, H, W; a sequence's shape) and ``dtype`` (``torch.long``:
    token ids) through ``model`` in eval mode, on the device of its parameters, and tabulate each leaf layer (but
    ``nn.Identity``, the placeholder of a layer that a model option leaves out)."""
    leaves = {
        module: name
        for name, module in model.named_modules()
        if name and not list(module.children()) and not isinstance(module, nn.Identity)
    }
    outputs: list[tuple[nn.Module, tuple[int, ...], bool]] = []

    def record(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor | tuple) -> None:
        out = out[0] if isinstance(out, tuple) else out  # a recurrent layer's (outputs, state)
        stored = isinstance(module, nn.Conv2d | nn.Linear) or (isinstance(module, POOLS) and out.shape != args[0].shape)
        outputs.append((module, tuple(out.shape[1:]), stored))

    hooks = [module.register_forward_hook(record) for module in leaves]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            device = next(model.parameters(), torch.empty(0)).device
            model(torch.zeros(1, *input_shape, dtype=dtype, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    flops = {key: sum(ops.values()) for key, ops in counter.get_flop_counts().items()}
    prefix = type(model).__name__
    rows = []
    for module, shape, stored in outputs:
        name = leaves[module]
        elements = int(torch.Size(shape).numel())
        rows.append(
            LayerRow(
                name=name,
                kind=type(module).__name__,
                output_shape=shape,
                parameters=sum(p.numel() for p in module.parameters(recurse=False)),
                activations=elements if stored else 0,
                macs=flops.get(f"{prefix}.{name}", 0) // 2,
            )
        )
    return ModelSummary(
        rows=rows,
        input_shape=tuple(input_shape),
        parameters=sum(p.numel() for p in model.parameters()),
        macs=counter.get_total_flops() // 2,
        activations=int(torch.Size(input_shape).numel()) + sum(row.activations for row in rows),
    )
