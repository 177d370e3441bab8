"""Activation statistics of a deep tanh/ReLU network under five weight initialisations (cs231n's experiment).

    python scripts/init_stats.py [layers=10] [units=500] [samples=1000] [seed=1] [plot=stats.png]

Unit Gaussian data (``samples`` x ``units``) goes through ``layers`` fully connected layers of ``units``
units, without biases, each followed by the non-linearity; the script prints the mean and standard
deviation of every layer's output (after the non-linearity) for

* small random: W ~ 0.01 N(0, 1), tanh: the outputs shrink to zero within a few layers;
* large random: W ~ 1.0 N(0, 1), tanh: every unit saturates at -1 or +1;
* Xavier, tanh: W ~ N(0, 1) / sqrt(fan_in) (Glorot & Bengio 2010): a slow decay;
* Xavier, ReLU: the same weights under ReLU halve the variance at every layer;
* He, ReLU: W ~ N(0, 1) / sqrt(fan_in / 2) (He et al. 2015): the statistics hold from layer to layer.

``plot=path.png`` also draws the standard deviations per layer (needs matplotlib).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from training.cli import parse_int_options, run_plain
from training.config import UserError

DEFAULTS = {"layers": 10, "units": 500, "samples": 1000, "seed": 1}

# name: (weight scale as a function of fan_in, non-linearity)
SCHEMES: dict[str, tuple[Callable[[int], float], Callable[[torch.Tensor], torch.Tensor]]] = {
    "small/tanh": (lambda fan_in: 0.01, torch.tanh),
    "large/tanh": (lambda fan_in: 1.0, torch.tanh),
    "xavier/tanh": (lambda fan_in: 1 / math.sqrt(fan_in), torch.tanh),
    "xavier/relu": (lambda fan_in: 1 / math.sqrt(fan_in), torch.relu),
    "he/relu": (lambda fan_in: math.sqrt(2 / fan_in), torch.relu),
}


def layer_outputs(scheme: str, layers: int = 10, units: int = 500, samples: int = 1000, seed: int = 1) -> list:
    """Each layer's output (after the non-linearity), ``samples`` x ``units``, for unit Gaussian input."""
    scale, activation = SCHEMES[scheme]
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, units, generator=generator)
    outputs = []
    for _ in range(layers):
        weight = torch.randn(x.shape[1], units, generator=generator) * scale(x.shape[1])
        x = activation(x @ weight)
        outputs.append(x)
    return outputs


def activation_stats(scheme: str, **options: int) -> list[tuple[float, float]]:
    """(mean, standard deviation) of each layer's output; ``options`` as for ``layer_outputs``."""
    return [(h.mean().item(), h.std().item()) for h in layer_outputs(scheme, **options)]


def _plot(stats: dict[str, list[tuple[float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for scheme, values in stats.items():
        axes.plot(range(1, len(values) + 1), [std for _, std in values], marker="o", label=scheme)
    axes.set(xlabel="layer", ylabel="std of the layer's output", yscale="log", title="activations by initialisation")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(args: list[str]) -> None:
    plot = next((arg.partition("=")[2] for arg in args if arg.startswith("plot=")), None)
    options = parse_int_options([arg for arg in args if not arg.startswith("plot=")], DEFAULTS)
    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UserError("plot= needs matplotlib, which is not installed (pip install matplotlib)") from None
    stats = {scheme: activation_stats(scheme, **options) for scheme in SCHEMES}
    print(
        f"{options['layers']} layers of {options['units']} units, {options['samples']} unit Gaussian samples, "
        f"seed {options['seed']}; mean / std of each layer's output (after the non-linearity)"
    )
    print("| layer | " + " | ".join(SCHEMES) + " |")
    print("|---" * (len(SCHEMES) + 1) + "|")
    for layer in range(options["layers"]):
        cells = (f"{stats[scheme][layer][0]:+.3f} / {stats[scheme][layer][1]:#.3g}" for scheme in SCHEMES)
        print(f"| {layer + 1} | " + " | ".join(cells) + " |")
    if plot is not None:
        _plot(stats, Path(plot))
        print(f"plot written to {plot}")


if __name__ == "__main__":
    run_plain(main, ValueError)
