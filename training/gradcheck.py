"""The lecture notes' gradient check (CS231n, "Gradient checks") for any network of the zoo.

Analytic gradients (autograd's backward pass) against centred finite differences, ``(f(x + h) - f(x - h)) / 2h``,
in float64, judged by the relative error ``|a - n| / max(|a|, |n|)`` with the notes' thresholds: above 1e-2 the
gradient is probably wrong, 1e-4 to 1e-2 is uncomfortable, below 1e-7 is good. As in the fast mode of
``torch.autograd.gradcheck``, the scalar checked is a random projection of the outputs, ``f = <v, model(x)>``, and
each parameter tensor and the input are checked along one random direction ``u`` (a few dimensions only, all of
them at once): the analytic ``<grad f, u>`` from one backward pass against the numeric derivative from two forward
passes per tensor.

Near a kink (ReLU's 0, a max pool's tie) the finite difference is wrong while the gradient is right. As the notes
advise, the "winners" of every kinked operation (the sign pattern of a ReLU's input, the indices a max pool picks)
are recorded in both perturbed forward passes; when they differ, the step crossed a kink: the tensor is tried again
along another direction, and if every try crosses one, its row warns instead of judging.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.overrides import TorchFunctionMode

import models
from training.config import UserError, instantiate

# The notes' thresholds of the relative error
WRONG = 1e-2
UNCOMFORTABLE = 1e-4
GOOD = 1e-7
# A numeric derivative of fewer than RESOLVED steps of float64's resolution of f (a signal that has vanished in a
# deep network at its initialisation) has too few digits to be judged
RESOLVED = 1e3
# ... and is measured again with a step STEP_GROWTH times larger, up to STEPS steps in all
STEP_GROWTH = 100.0
STEPS = 3


def relative_error(analytic: float, numeric: float) -> float:
    """``|a - n| / max(|a|, |n|)``; 0 when both are 0 (a gradient that is exactly zero, and rightly so)."""
    scale = max(abs(analytic), abs(numeric))
    return abs(analytic - numeric) / scale if scale > 0 else 0.0


def judge(error: float) -> str:
    """The notes' verdict on a relative error: wrong, uncomfortable, acceptable or good."""
    if not error <= WRONG:  # NaN is wrong too
        return "wrong"
    if error > UNCOMFORTABLE:
        return "uncomfortable"
    return "acceptable" if error > GOOD else "good"


@dataclass(frozen=True)
class GradientRow:
    """The check of one tensor: its directional derivative, analytic and numeric, along a random direction."""

    name: str
    shape: tuple[int, ...]
    analytic: float
    numeric: float
    kink: bool  # every perturbation tried crossed a kink: the numeric derivative cannot be trusted
    resolution: float = 0.0  # the smallest change of f float64 resolves, divided by 2h
    step: float = 1e-6  # the h of the finite difference

    @property
    def too_small(self) -> bool:
        """Both derivatives within ``RESOLVED`` steps of the numeric one's resolution: it has too few digits."""
        return max(abs(self.analytic), abs(self.numeric)) < RESOLVED * self.resolution

    @property
    def relative_error(self) -> float:
        return relative_error(self.analytic, self.numeric)

    @property
    def verdict(self) -> str:
        if self.kink:
            return "kink crossed"
        return "too small" if self.too_small else judge(self.relative_error)

    @property
    def wrong(self) -> bool:
        return self.verdict == "wrong"


def _elementwise(low: float | None, high: float | None) -> Callable[..., torch.Tensor]:
    """The winner pattern of a piecewise function of one element with kinks at ``low`` and ``high``."""

    def winners(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        sides = [x > low] if low is not None else []
        return torch.stack([*sides, x < high] if high is not None else sides)

    return winners


def _hardtanh(x: torch.Tensor, min_val: float = -1.0, max_val: float = 1.0, *args: Any, **kwargs: Any) -> torch.Tensor:
    return _elementwise(kwargs.get("min_val", min_val), kwargs.get("max_val", max_val))(x)


def _pool_indices(pool: Callable[..., Any], position: int) -> Callable[..., torch.Tensor]:
    """The indices a max ``pool`` picks: called again with ``return_indices`` (its argument at ``position``)."""

    def winners(*args: Any, **kwargs: Any) -> torch.Tensor:
        if len(args) > position:
            args = (*args[:position], True, *args[position + 1 :])
        else:
            kwargs = {**kwargs, "return_indices": True}
        return pool(*args, **kwargs)[1]

    return winners


def _argmax(x: torch.Tensor, dim: int | Sequence[int] = (), *args: Any, **kwargs: Any) -> torch.Tensor:
    """Where ``torch.amax`` over ``dim`` (every dimension when empty) finds each maximum."""
    dim = kwargs.get("dim", dim)
    dims = [d % x.dim() for d in ([dim] if isinstance(dim, int) else dim or range(x.dim()))]
    kept = [d for d in range(x.dim()) if d not in dims]
    return x.permute(*kept, *dims).flatten(len(kept)).argmax(-1)


_AT_ZERO = _elementwise(0.0, None)
_RELU6 = _elementwise(0.0, 6.0)
# What the kinked operations' winners are, by the function torch dispatches (functional and tensor methods)
KINKED: dict[Callable[..., Any], Callable[..., torch.Tensor]] = {
    **dict.fromkeys(
        (
            F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_,
            F.leaky_relu, F.leaky_relu_, F.prelu, torch.prelu, F.rrelu, F.rrelu_, F.selu, torch.selu,
        ),
        _AT_ZERO,
    ),
    F.relu6: _RELU6,
    F.hardtanh: _hardtanh,
    F.hardtanh_: _hardtanh,
    **dict.fromkeys((torch.amax, torch.Tensor.amax), _argmax),
}  # fmt: skip
# Max pools, by the position of their return_indices argument
KINKED.update({pool: _pool_indices(pool, 6) for pool in (F.max_pool1d, F.max_pool2d, F.max_pool3d)})
KINKED.update(
    {pool: _pool_indices(pool, 2) for pool in (F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d)}
)


class WinnerRecorder(TorchFunctionMode):
    """Within it, every kinked operation of ``KINKED`` records its winners (before it runs: ReLU may work in place)."""

    def __init__(self) -> None:
        super().__init__()
        self.winners: list[torch.Tensor] = []

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        winners = KINKED.get(func)
        if winners is not None:
            self.winners.append(winners(*args, **kwargs))
        return func(*args, **kwargs)


def crossed_kink(first: Sequence[torch.Tensor], second: Sequence[torch.Tensor]) -> bool:
    """Whether the winners of two forward passes differ: a step between them crossed a kink."""
    return len(first) != len(second) or any(not torch.equal(a, b) for a, b in zip(first, second, strict=True))


def _direction(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random direction whose elements are standard normal: each moves by about h, as in the notes' check of one
    dimension, and the derivative is not shrunk to the noise of f by a unit norm."""
    return torch.randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)


def check_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    eps: float = 1e-6,
    seed: int = 0,
    tries: int = 3,
    names: Collection[str] | None = None,
) -> list[GradientRow]:
    """One ``GradientRow`` per parameter tensor of ``model`` that requires a gradient, then one for ``inputs``
    (floating-point inputs only), in float64 with the model in eval mode (dropout and other stochastic layers
    off). ``eps`` is the step h; a tensor whose step crosses a kink is tried along up to ``tries`` directions.
    ``names`` keeps the rows of those tensors only (parameter names, ``"input"``): two forward passes each.
    ``model`` is converted to float64 in place."""
    model = model.to(torch.float64).eval()
    inputs = inputs.to(torch.float64) if inputs.is_floating_point() else inputs
    generator = torch.Generator().manual_seed(seed)
    tensors = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if inputs.is_floating_point():
        inputs = inputs.detach().clone().requires_grad_(True)
        tensors.append(("input", inputs))
    with torch.no_grad():
        projection = torch.randn(model(inputs).shape, generator=generator, dtype=torch.float64)

    def objective() -> torch.Tensor:
        return (model(inputs) * projection).sum()

    if names is not None:
        tensors = [(name, t) for name, t in tensors if name in names]
    gradients = torch.autograd.grad(objective(), [t for _, t in tensors], allow_unused=True)
    rows = []
    for (name, tensor), gradient in zip(tensors, gradients, strict=True):
        grad = torch.zeros_like(tensor) if gradient is None else gradient
        for step in (eps * STEP_GROWTH**k for k in range(STEPS)):
            for _ in range(tries):
                direction = _direction(tensor, generator)
                numeric, kink, resolution = _numeric_derivative(objective, tensor, direction, step)
                if not kink:
                    break
            analytic = float((grad * direction).sum())
            row = GradientRow(name, tuple(tensor.shape), analytic, numeric, kink, resolution, step)
            if kink or not row.too_small:
                break
        rows.append(row)
    return rows


def _numeric_derivative(
    objective: Callable[[], torch.Tensor], tensor: torch.Tensor, direction: torch.Tensor, eps: float
) -> tuple[float, bool, float]:
    """``(f(t + h u) - f(t - h u)) / 2h`` along ``direction`` u, whether the two passes' winners differ, and the
    resolution of that quotient (the spacing of float64 numbers near f, over 2h)."""
    values, winners = [], []
    original = tensor.detach().clone()
    with torch.no_grad():
        try:
            for sign in (1.0, -1.0):
                tensor.copy_(original + sign * eps * direction)
                with WinnerRecorder() as recorder:
                    values.append(float(objective()))
                winners.append(recorder.winners)
        finally:
            tensor.copy_(original)
    spacing = math.ulp(max(abs(values[0]), abs(values[1])))
    return (values[0] - values[1]) / (2 * eps), crossed_kink(*winners), spacing / (2 * eps)


def smallest_input(model: nn.Module, batch: int = 2) -> torch.Tensor:
    """A random float64 batch of the smallest images ``model`` (a ``ClassifierNet``) takes."""
    if not isinstance(model, models.ClassifierNet):
        raise UserError(
            f"the gradient check takes the image classifiers of the registry, not a {type(model).__name__}; "
            f"accepted: model={', '.join(models.list_models())}"
        )
    size = max(model.min_input_size, model.input_field or 1)
    generator = torch.Generator().manual_seed(0)
    return torch.randn((batch, model.in_channels, size, size), generator=generator, dtype=torch.float64)


def print_table(title: str, rows: Sequence[GradientRow], console: Console) -> None:
    """The rows as a table: name, shape, analytic and numeric derivative, relative error, verdict."""
    table = Table(title=title)
    for column in ("tensor", "shape", "h", "analytic", "numeric", "relative error", "verdict"):
        table.add_column(column, justify="left" if column in ("tensor", "verdict") else "right", no_wrap=True)
    for row in rows:
        shape = "x".join(map(str, row.shape))
        error = f"{row.relative_error:.2e}"
        table.add_row(
            row.name, shape, f"{row.step:.0e}", f"{row.analytic:+.6e}", f"{row.numeric:+.6e}", error, row.verdict
        )
    console.print(table)


def _model_node(cfg: DictConfig) -> DictConfig:
    """``cfg.model`` without the class count and channels left null (``data.in_channels=null``: the builder's)."""
    node = OmegaConf.to_container(cfg.model, resolve=True)
    for key in ("num_classes", "in_channels"):
        if key in node and node[key] is None:
            del node[key]
    return OmegaConf.create(node)


def _worst(rows: Sequence[GradientRow]) -> GradientRow:
    return max(rows, key=lambda row: math.inf if math.isnan(row.relative_error) else row.relative_error)


def report(title: str, rows: Sequence[GradientRow], console: Console) -> None:
    """Print the rows' table, a warning for each tensor whose every step crossed a kink, and the worst relative
    error; ``UserError`` naming the worst tensor when a gradient is wrong."""
    print_table(title, rows, console)
    for row in rows:
        if row.kink:
            print(
                f"warning: {row.name}: every step of h={row.step:g} crossed a kink (ReLU or max pooling); its finite "
                "difference cannot be trusted, and it is not judged",
                file=sys.stderr,
            )
    worst = _worst([row for row in rows if not row.kink and not row.too_small] or rows)
    if worst.wrong:
        raise UserError(
            f"the gradient of {worst.name} is wrong: relative error {worst.relative_error:.2e} > {WRONG:g} "
            f"(analytic {worst.analytic:.6e}, numeric {worst.numeric:.6e})"
        )
    console.print(f"worst relative error: {worst.relative_error:.2e} ({worst.name}, {worst.verdict})")


def _check_settings(cfg: DictConfig) -> None:
    """``UserError`` for a step that is not a positive finite number, or a batch size or seed that is no count."""
    eps = cfg.eps
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps < math.inf:
        raise UserError(f"eps: expected a positive number (the step h, e.g. 1e-6), got {eps!r}")
    for key, least in (("batch_size", 1), ("seed", 0)):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UserError(f"{key}: expected an integer of at least {least}, got {value!r}")


def gradcheck(cfg: DictConfig) -> list[GradientRow]:
    """The job of ``scripts/gradcheck.py``: the check of ``cfg.model`` on a batch of the smallest images it takes,
    reported as a table (``report``)."""
    _check_settings(cfg)
    model = instantiate(_model_node(cfg), "model")
    inputs = smallest_input(model, cfg.batch_size)
    rows = check_gradients(model, inputs, eps=cfg.eps, seed=cfg.seed)
    console = Console(soft_wrap=True)
    console.width = max(console.width, 132)  # the names whole, in a pipe too
    size = "x".join(map(str, inputs.shape))
    report(f"gradient check of {cfg.model.get('name', type(model).__name__)} on a {size} input", rows, console)
    return rows
