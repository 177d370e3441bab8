"""The lecture notes' gradient check (training/gradcheck.py, scripts/gradcheck.py): it passes for every registered
model, names the tensor whose backward is wrong, warns at the kinks of ReLU and max pooling, and runs as a script."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from rich.console import Console
from test_bad_inputs import run_script_in_process
from torch import nn

import models
from conftest import ROOT, build_on_meta, count_parameters
from training.cli import run
from training.config import UserError
from training.gradcheck import (
    GradientRow,
    WinnerRecorder,
    check_gradients,
    gradcheck,
    judge,
    relative_error,
    report,
    smallest_input,
)


def heavy(name: str) -> bool:
    """Tens of millions of float64 parameters: seconds to build and to run forward on a CPU."""
    return count_parameters(build_on_meta(name)) > 20_000_000


# Inception-v3 at its paper initialisation (truncated normal, std 0.1) in eval mode, whose batch norms still hold
# unit statistics, grows its activations to about 1e10 by the classifier: a difference of two forward passes keeps
# too few digits there. Checked without the auxiliary head (75x75 inputs, not 299x299) at torch's initialisation.
OPTIONS = {"inception_v3": {"aux_logits": False, "init": "torch"}}


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) if heavy(name) else name for name in models.list_models()]
)
def test_every_registered_model_passes_in_float64(name: str) -> None:
    torch.manual_seed(0)
    model = models.create_model(name, **OPTIONS.get(name, {}))
    inputs = smallest_input(model)
    parameters = [parameter for parameter, _ in model.named_parameters()]
    # the input's derivative goes back through every layer; the first and last parameters check the two ends
    rows = check_gradients(model, inputs, names={"input", parameters[0], parameters[-1]})
    assert [row.name for row in rows] == [parameters[0], parameters[-1], "input"]
    assert not [row for row in rows if row.wrong]
    assert [row for row in rows if row.verdict in ("good", "acceptable")], rows


class WrongScale(torch.autograd.Function):
    """y = x * w, whose backward gives w the gradient of 2 w (x's is right)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, w = ctx.saved_tensors
        return grad * w, 2 * (grad * x).sum(0)


class Scale(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.rand(width) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return WrongScale.apply(x, self.weight)


def wrong_network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), Scale(5), nn.Linear(5, 3))


def test_a_wrong_backward_fails_naming_its_tensor() -> None:
    rows = check_gradients(wrong_network(), torch.randn(2, 4))
    assert [row.name for row in rows if row.wrong] == ["2.weight"]
    assert rows[2].relative_error == pytest.approx(0.5)  # twice the gradient: |2a - a| / 2a
    assert all(row.verdict == "good" for row in rows if row.name != "2.weight")
    with pytest.raises(UserError, match=r"^the gradient of 2\.weight is wrong: relative error 5\.00e-01 > 0\.01"):
        report("wrong", rows, Console(file=None, quiet=True))
    # torch's own check agrees, on the Function alone
    x, w = torch.randn(3, 5, dtype=torch.float64, requires_grad=True), torch.rand(5, dtype=torch.float64) + 0.5
    assert not torch.autograd.gradcheck(WrongScale.apply, (x, w.requires_grad_()), raise_exception=False)


def test_the_kink_of_relu_and_of_max_pooling_is_detected_and_warned(capsys: pytest.CaptureFixture[str]) -> None:
    relu = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    at_kink = torch.tensor([[0.0, 1.0, -1.0]])
    with torch.no_grad():  # the first unit's input exactly 0: ReLU's kink
        relu[0].weight.copy_(torch.eye(3))
        relu[0].bias.zero_()
    rows = check_gradients(relu, at_kink)
    assert [row.kink for row in rows] == [True, True, True]
    assert rows[-1].verdict == "kink crossed"
    report("relu", rows, Console(file=None, quiet=True))
    assert capsys.readouterr().err.startswith("warning: 0.weight: every step of h=1e-06 crossed a kink")
    away = check_gradients(relu, torch.tensor([[0.5, 1.0, -1.0]]))
    assert not any(row.kink for row in away) and all(row.verdict == "good" for row in away)
    # two equal maxima in a window: a step moves one above the other, and the step back the other way
    tie = torch.tensor([[[[1.0, 1.0], [0.0, -1.0]]]])
    assert check_gradients(nn.MaxPool2d(2), tie)[0].kink
    assert not check_gradients(nn.MaxPool2d(2), tie + torch.tensor([0.0, 0.5, 0.0, 0.0]).view(1, 1, 2, 2))[0].kink


def test_winners_are_recorded_for_functional_and_module_calls() -> None:
    x = torch.tensor([[-1.0, 2.0, 7.0]])
    with WinnerRecorder() as recorder:
        torch.relu(x), nn.ReLU6()(x), nn.functional.leaky_relu(x), x.amax(dim=-1), torch.amax(torch.stack([-x, x]))
    assert [w.tolist() for w in recorder.winners] == [
        [[[False, True, True]]],  # the input above ReLU's kink at 0
        [[[False, True, True]], [[True, True, False]]],  # above ReLU6's kink at 0, below its kink at 6
        [[[False, True, True]]],
        [2],  # the index of the maximum
        5,  # of the maximum of every element
    ]


@pytest.mark.parametrize(
    ("analytic", "numeric", "verdict"),
    [(1.0, 1.0, "good"), (1.0, 1.0 + 1e-6, "acceptable"), (1.0, 1.001, "uncomfortable"), (1.0, 1.1, "wrong")],
)
def test_the_notes_thresholds(analytic: float, numeric: float, verdict: str) -> None:
    assert judge(relative_error(analytic, numeric)) == verdict
    assert relative_error(0.0, 0.0) == 0.0
    assert judge(float("nan")) == "wrong"


def test_a_derivative_below_float64s_resolution_is_not_judged() -> None:
    row = GradientRow("t", (1,), analytic=1e-13, numeric=-1e-13, kink=False, resolution=1e-12)
    assert row.relative_error == 2.0 and row.verdict == "too small" and not row.wrong
    wrong = GradientRow("w", (1,), analytic=1.0, numeric=1.5, kink=False, resolution=1e-12)
    with pytest.raises(UserError, match=r"^the gradient of w is wrong: relative error 3\.33e-01"):
        report("rows", [row, wrong], Console(file=None, quiet=True))


def test_the_script_prints_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["scripts/gradcheck.py", "model=lenet5", "model.pool=max"])
    try:
        run(gradcheck, "gradcheck")
    finally:
        GlobalHydra.instance().clear()
    out = capsys.readouterr().out
    assert "gradient check of lenet5 on a 2x1x32x32 input" in out
    assert "features.c3.weight" in out and "worst relative error:" in out
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model=lenett5"], "error: unknown model 'lenett5'; did you mean lenet5?"),
        (["model=lenet5", "model.pool=sum"], "error: model: unknown pool 'sum'; accepted: avg, max"),
        (["model.pol=max"], "error: unknown model setting 'pol'; did you mean pool?"),
        (["model=rnn"], "error: the gradient check takes the image classifiers of the registry"),
        (["eps=0"], "error: eps: expected a positive number"),
        (["eps=abc"], "error: eps: expected a positive number"),
        (["batch_size=0"], "error: batch_size: expected an integer of at least 1, got 0"),
        (["data.in_channels=abc"], "error: model.in_channels: expected"),
    ],
)
def test_the_script_refuses_bad_input_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    code, stderr = run_script_in_process("gradcheck.py", args, monkeypatch, capsys)
    assert code == 2 and stderr.startswith(message) and stderr.count("\n") == 1, stderr


def test_readme_and_docs_show_the_command() -> None:
    assert "python scripts/gradcheck.py model=" in (ROOT / "README.md").read_text()
    assert "scripts/gradcheck.py" in (ROOT / "docs" / "debugging.md").read_text()
