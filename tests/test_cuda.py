"""The GPU path: every model, precision, speed switch and data path on a CUDA device (``pytest -m cuda``;
``scripts/gpu_check.sh`` runs these with the rest of the GPU check). Each test skips, with one line, where no CUDA
device is available, so the CPU suite only collects them.

The runs go through ``training.tasks.train`` as ``scripts/train.py`` does, with ``trainer.accelerator=gpu``;
``StepProbe``, added as one more callback from the command line, records what each step saw.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytorch_lightning as pl
import torch
from test_language_model import SENTENCE
from test_zoo import native_input_size

from conftest import CONFIG_DIR, compose_config, model_inputs
from data import DigitsDataModule, FakeDataModule
from models.rnn import GRU, LSTM, RNN
from training.tasks import build_net, load_checkpoint, train

# cuBLAS is deterministic (trainer.deterministic=true) only with a fixed workspace, read when its handle is made:
# before the first CUDA call of this process
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

FAST = ["callbacks.progress_bar=null", "callbacks.model_summary=null", "logger=csv"]
GPU = ["trainer.accelerator=gpu", "trainer.devices=1", "+callbacks.probe._target_=test_cuda.StepProbe"]
MODEL_CONFIGS = sorted(path.stem for path in (CONFIG_DIR / "model").glob("*.yaml"))
SEQUENCE_MODELS = {"rnn", "lstm", "gru"}  # read the digits as sequences of rows (data=seq_digits)


class StepProbe(pl.Callback):
    """Records, for each training step, the loss, the network's input layout, the dtypes its linear and
    convolutional layers compute in, and the trainable parameters without a finite gradient after the backward
    pass. ``StepProbe.runs[-1]`` is the newest run's."""

    runs: ClassVar[list[StepProbe]] = []

    def __init__(self, forward: bool = True) -> None:
        self.forward = forward  # record the network's input and output (off under compile=true: no hook to trace)
        self.losses: list[float] = []
        self.missing_gradients: list[list[str]] = []
        self.inputs_channels_last: list[bool] = []
        self.output_dtypes: list[torch.dtype] = []  # of every linear and convolutional layer in training
        self.handles: list[Any] = []
        StepProbe.runs.append(self)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.forward:
            return
        # registered after SpeedSwitches' own pre-hook (its setup ran first): sees the input the network sees
        self.handles.append(pl_module.net.register_forward_pre_hook(self.record_input))
        for layer in pl_module.net.modules():
            if isinstance(layer, torch.nn.Linear | torch.nn.Conv2d):
                self.handles.append(layer.register_forward_hook(self.record_output))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for handle in self.handles:
            handle.remove()

    def record_input(self, net: torch.nn.Module, args: tuple) -> None:
        if net.training and args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
            self.inputs_channels_last.append(args[0].is_contiguous(memory_format=torch.channels_last))

    def record_output(self, layer: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        if layer.training:
            self.output_dtypes.append(output.dtype)

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.missing_gradients.append(
            [
                name
                for name, parameter in pl_module.named_parameters()
                if parameter.requires_grad and (parameter.grad is None or not parameter.grad.isfinite().all())
            ]
        )

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, *args: Any) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(loss.item())


@pytest.fixture
def gpu_run(tmp_path: Path) -> Iterator[Any]:
    """Train on the GPU as scripts/train.py would: returns the summary and the run's ``StepProbe``."""
    count = iter(range(100))

    def run(*overrides: str) -> tuple[dict[str, Any], StepProbe]:
        cfg = compose_config("train", tmp_path / f"run{next(count)}", [*FAST, *GPU, *overrides])
        summary = train(cfg)
        return summary, StepProbe.runs[-1]

    yield run
    StepProbe.runs.clear()


@pytest.fixture
def fp32_exact() -> Iterator[None]:
    """Full float32 on the GPU: no TF32 in matrix products and convolutions (10-bit mantissas)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def data_overrides(name: str, tmp_path: Path) -> list[str]:
    """A small data set that fits model config ``name``: random images at the model's own input size, the digits
    as sequences, or a text for the character-level language model."""
    if name in SEQUENCE_MODELS:
        return ["data=seq_digits", "data.batch_size=16"]
    if name == "char_lstm":
        text = tmp_path / "input.txt"
        text.write_text(SENTENCE * 200, encoding="utf-8")
        return ["experiment=char_lstm", f"data.path={text}", "data.seq_len=20", "data.batch_size=8"]
    channels, size, _ = native_input_size(name)
    return [
        "data=fake", f"data.image_size={size}", f"data.in_channels={channels}",
        "data.batch_size=2", "data.train_size=2", "data.val_size=2", "data.test_size=2",
    ]  # fmt: skip


def relative_max_difference(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got.double() - expected.double()).abs().max() / expected.double().abs().max()).item()


def first_tensor(output: Any) -> torch.Tensor:
    while isinstance(output, tuple | list):
        output = output[0]
    return output


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_every_model_trains_a_bf16_channels_last_step(gpu_run, tmp_path: Path, name: str) -> None:
    summary, probe = gpu_run(
        f"model={name}", *data_overrides(name, tmp_path), "debug=fdr", "trainer.precision=bf16-mixed",
        "channels_last=true",
    )  # fmt: skip
    assert len(probe.losses) == 1 and torch.isfinite(torch.tensor(probe.losses)).all(), probe.losses
    assert probe.missing_gradients == [[]]  # every trainable parameter has a finite gradient
    assert probe.output_dtypes and set(probe.output_dtypes) == {torch.bfloat16}  # autocast: every layer in bf16
    assert all(probe.inputs_channels_last)  # image batches reach the network channels-last
    assert torch.isfinite(torch.tensor(summary["test/loss"]))


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_the_fp32_forward_on_the_gpu_equals_the_cpu_forward(train_config, fp32_exact, tmp_path: Path, name: str):
    cfg = train_config(f"model={name}", *data_overrides(name, tmp_path))
    torch.manual_seed(0)
    net = build_net(cfg).eval()
    if name == "char_lstm":
        inputs = torch.randint(0, cfg.model.vocab_size, (2, 20))
    elif name in SEQUENCE_MODELS:
        inputs = torch.randn(2, 8, cfg.model.input_size)
    else:
        inputs = torch.randn(2, *native_input_size(name))
    with torch.no_grad():
        expected = first_tensor(net(inputs))
        got = first_tensor(copy.deepcopy(net).cuda()(inputs.cuda()))
    assert got.device.type == "cuda"
    assert relative_max_difference(got.cpu(), expected) <= 1e-4


def gpu_datamodule(datamodule: pl.LightningDataModule) -> pl.LightningDataModule:
    """``datamodule`` as a Trainer on the GPU sees it: the fast path keeps its tensors on the trainer's device."""
    datamodule.trainer = pl.Trainer(
        accelerator="gpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    return datamodule


@pytest.mark.parametrize(
    ("make", "exact"),
    [
        pytest.param(lambda: FakeDataModule(train_size=300, val_size=70, batch_size=64, augment="cifar"), True,
                     id="fake-cifar"),
        pytest.param(lambda: DigitsDataModule(batch_size=64, augment="mnist"), False, id="digits-mnist"),
    ],
)  # fmt: skip
def test_the_fast_path_on_the_gpu_gives_the_cpu_batches_and_augmentation(make, exact: bool) -> None:
    cpu, gpu = make(), gpu_datamodule(make())
    cpu.setup()
    gpu.setup()
    for split in ("train", "val"):
        torch.manual_seed(0)
        cpu_images, cpu_labels = model_inputs(cpu, split)
        torch.manual_seed(0)
        gpu_images, gpu_labels = model_inputs(gpu, split)
        assert gpu_images.device.type == "cuda" and gpu.train_set.images.device.type == "cuda"
        assert torch.equal(gpu_labels.cpu(), cpu_labels)  # the same examples in the same order
        if exact or split == "val":  # crops and flips move whole pixels: exactly the CPU's images
            torch.testing.assert_close(gpu_images.cpu(), cpu_images, rtol=0, atol=1e-6)
        else:  # the affine map's nearest-pixel lookup may round a coordinate at a tie the other way
            differs = (gpu_images.cpu() - cpu_images).abs() > 1e-5
            assert differs.float().mean().item() <= 1e-3


def test_ema_guards_and_checkpoints_on_the_gpu_resume_to_the_uninterrupted_weights(gpu_run) -> None:
    state = [
        "ema=enabled", "scheduler.step_size=1", "scheduler.gamma=0.5", "+trainer.limit_train_batches=10",
        "trainer.deterministic=true",
    ]  # fmt: skip
    uninterrupted, _ = gpu_run(*state, "trainer.max_epochs=3")
    first, _ = gpu_run(*state, "trainer.max_epochs=1")
    resumed, _ = gpu_run(*state, "trainer.max_epochs=3", f"ckpt_path={first['last_checkpoint']}")
    expected, got = (load_checkpoint(run["last_checkpoint"]) for run in (uninterrupted, resumed))
    assert (got["epoch"], got["global_step"]) == (expected["epoch"], expected["global_step"])
    assert got["global_step"] == 30
    for key in ("state_dict", "current_model_state"):  # the EMA average and the live weights
        assert all(torch.equal(got[key][name], expected[key][name]) for name in expected[key]), key
    assert resumed["test/acc"] == uninterrupted["test/acc"]


@pytest.mark.parametrize("kind", [RNN, LSTM, GRU])
def test_fused_cudnn_recurrent_layers_equal_the_scratch_cells(fp32_exact, kind: type) -> None:
    torch.manual_seed(0)
    scratch = kind(12, 20, num_layers=2, bidirectional=True, batch_first=True).cuda()
    fused = copy.deepcopy(scratch)
    fused.impl = "fused"
    inputs = torch.randn(5, 7, 12, device="cuda", requires_grad=True)
    results = []
    for net in (scratch, fused):
        output, state = net(inputs)
        (gradient,) = torch.autograd.grad(output.sum(), inputs)
        results.append([output, *(state if isinstance(state, tuple) else (state,)), gradient])
    for got, expected in zip(*reversed(results), strict=True):
        assert relative_max_difference(got, expected) <= 1e-5


@pytest.mark.parametrize(("name", "channels"), [("lenet5", 1), ("resnet20", 3)])
def test_compile_gives_the_eager_first_step(gpu_run, name: str, channels: int) -> None:
    data = ["data=fake", "data.image_size=32", f"data.in_channels={channels}", "data.batch_size=32", "test=false",
            "trainer.max_epochs=1"]  # fmt: skip
    _, eager = gpu_run(f"model={name}", *data)
    _, compiled = gpu_run(f"model={name}", *data, "compile=true", "+callbacks.probe.forward=false")
    assert len(compiled.losses) == len(eager.losses) == 8  # one epoch of 256 images
    assert abs(compiled.losses[0] - eager.losses[0]) <= 1e-4
    assert torch.isfinite(torch.tensor(compiled.losses)).all()


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(["model=resnet20", "data=fake", "data.batch_size=32"], id="resnet20"),
        pytest.param(["model=lstm", "data=seq_digits"], id="lstm"),
    ],
)
def test_16_bit_mixed_precision_trains_with_its_gradient_scaler(gpu_run, overrides: list[str]) -> None:
    summary, probe = gpu_run(
        *overrides, "trainer.precision=16-mixed", "trainer.max_epochs=2", "+trainer.limit_train_batches=8",
        "+trainer.limit_val_batches=2",
    )  # fmt: skip
    assert probe.output_dtypes and set(probe.output_dtypes) == {torch.float16}
    assert torch.isfinite(torch.tensor(probe.losses)).all() and len(probe.losses) == 16
    checkpoint = load_checkpoint(summary["last_checkpoint"])
    scaler = checkpoint["MixedPrecision"]  # Lightning's precision plugin keeps the GradScaler's state
    assert scaler["scale"] > 0 and scaler["_growth_tracker"] >= 0
    assert torch.isfinite(torch.tensor(summary["test/loss"]))
