"""Speed against references, each comparison measured side by side in one run (sides taking turns, median ratios).

    python scripts/benchmark.py [parts=a,b,c] [models=<names>] [device=cpu] [precision=32|bf16] [channels_last=false]
                                [control=false] [batch=8] [image_size=64] [steps=30] [network=lenet5] [epochs=4]
                                [rounds=5] [sides=default,bare,alone] [variant=<override>;...] [data=digits]
                                [train_size=45000] [data_batches=50] [data_batch=128] [workers=<one per CPU core>]

(a) Every model of the zoo that torchvision also has (models=: a comma-separated subset), ours against torchvision's
    with the same weights: a training step (forward, cross-entropy over every output, backward, SGD step) and
    inference, in images/s, on random ``batch`` x 3 x ``image_size`` x ``image_size`` inputs with 10 classes. The
    sides take turns one step at a time (the order rotated every round), each step timed on its own: ``steps``
    steps of each side, or as many as fill 1 s a side (at most 200); the ratio is the median of the pairs' ratios,
    so a slow moment of the machine falls on both sides of a pair. ``control=true`` times a copy of torchvision's
    network as a third side, in turn with the others: ``tv copy/tv``, the same network against itself, shows the
    resolution of the measurement on the machine (1.000 on a quiet one). ``device=cuda precision=bf16 channels_last=true
    batch=256 image_size=224 models=resnet50`` is the GPU setting (autocast to bfloat16, weights and inputs
    channels-last).
(b) LeNet-5 on the bundled digits: the default run's epoch (the composed default config, the Lightning Trainer with
    the default callbacks, guards and TensorBoard logger, as scripts/train.py builds it) and Lightning without
    callbacks, logger or checkpoints (the setting of Lightning's own parity benchmark), each against a minimal
    PyTorch loop over the same tensors with the same network, optimizer, scheduler and whole-batch augmentation
    (training and a validation pass counting correct answers); and the minimal loop's own work as a LightningModule
    on that bare Trainer (``LightningAlone``: what Lightning's loop itself costs). ``epochs`` per fit, the first
    left out; ``rounds`` rounds of one fit of each side, every side and the minimal loop once a round, and each
    side's ratio the median of its rounds' ratios to the minimal loop's. ``network=<model config>`` runs the same
    comparison with another network on the digits (``network=resnet20``: an epoch fourteen times LeNet-5's, the
    same per-step cost of Lightning). ``sides=variant variant='<override>;<override>'`` adds the default run with
    those config overrides, to measure what a part of it costs (``sides=default,variant
    variant='callbacks.layer_stats=null'``). ``data=cifar_shaped`` times the GPU check's setting instead: CIFAR-10's
    training split in shape, ``train_size`` random 3x32x32 images (and a ninth as many for validation) held in memory.
(c) The in-memory fast path against per-image DataLoader loading (scripts/benchmark_data.py's measurement), ``rounds``
    rounds.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torchvision
from benchmark_data import compare_paths
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch import nn
from torch.nn import functional as F

import models
from data.base import available_cpus, default_num_workers
from models import TORCHVISION_NAMES
from training.cli import CONFIG_DIR, check_option, parse_int_options, run_plain
from training.config import UserError, instantiate
from training.speed import SpeedSwitches, compile_arguments
from training.tasks import build, run_callbacks
from training.timing import Clock, alternate, median, median_ratio, synchronize

INTEGERS = {
    "batch": 8, "image_size": 64, "steps": 30, "epochs": 4, "rounds": 5, "train_size": 45000, "data_batches": 50,
    "data_batch": 128, "workers": default_num_workers(),
}  # fmt: skip
CHOICES = {
    "parts": "a,b,c", "models": ",".join(TORCHVISION_NAMES), "device": "cpu", "precision": "32", "network": "lenet5",
    "data": "digits", "sides": "default,bare,alone", "compile_mode": "default", "variant": "",
}  # fmt: skip
SWITCHES = {"channels_last": "false", "control": "false", "compile": "false"}
# (b)'s data: the bundled digits, or CIFAR-10's training split in shape (``train_size`` random 3x32x32 images in
# memory, on the GPU when training there; batch 128, the cifar crops and flips on whole batches), as
# experiment=resnet20_cifar10
DATA = {
    "digits": [],
    "cifar_shaped": ["data=fake", "data.test_size=128", "data.batch_size=128", "data.augment=cifar"],
}
SIDES = {
    "default": "the default run (callbacks, guards, TensorBoard, checkpoints)",
    "bare": "bare Trainer (the default run's module: metrics, logging)",
    "alone": "Lightning alone (forward, loss and step in a LightningModule, bare Trainer)",
    "variant": "the default run with",  # variant's overrides
}
NUM_CLASSES = 10
MIN_SECONDS = 1.0  # each side's timed steps in (a) last at least this long
MAX_STEPS = 200


def parse_options(args: list[str]) -> dict[str, Any]:
    """The integer options (``parse_int_options``), the comma lists and words, and the true/false switches."""
    words = {**CHOICES, **SWITCHES}
    options: dict[str, Any] = dict(words)
    numbers = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key in words:
            options[key] = value
        else:
            numbers.append(arg)
    options |= parse_int_options(numbers, INTEGERS)
    for key in SWITCHES:
        if options[key] not in ("true", "false"):
            raise ValueError(f"{key}: expected true or false, got {options[key]!r}")
        options[key] = options[key] == "true"
    for key in ("parts", "models", "sides"):
        options[key] = [item for item in options[key].split(",") if item]
    for key, accepted in (("data", DATA), ("sides", SIDES)):
        chosen = options[key] if isinstance(options[key], list) else [options[key]]
        if not chosen or any(item not in accepted for item in chosen):
            what = "a comma-separated subset" if key == "sides" else "one"
            raise ValueError(f"{key}: {what} of {', '.join(accepted)}, got {','.join(chosen) or 'none'}")
    unknown = [part for part in options["parts"] if part not in ("a", "b", "c")]
    if unknown or not options["parts"]:
        raise ValueError(f"parts: a comma-separated subset of a,b,c, got {','.join(options['parts'])!r}")
    unshared = [name for name in options["models"] if name not in TORCHVISION_NAMES]
    if unshared:
        raise ValueError(f"models: {', '.join(unshared)} not in torchvision; shared: {', '.join(TORCHVISION_NAMES)}")
    if options["precision"] not in ("32", "bf16"):
        raise ValueError(f"precision: expected 32 or bf16, got {options['precision']!r}")
    try:
        options["device"] = torch.device(options["device"])
    except RuntimeError as err:
        raise ValueError(f"device: {err}") from None
    if options["device"].type == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda: no CUDA device is available here")
    try:
        check_option("model", options["network"])  # network: a model config, as train.py's model=
    except UserError as err:
        raise ValueError(f"network: {err}") from None
    options["variant"] = [override for override in options["variant"].split(";") if override]
    if "variant" in options["sides"]:
        if not options["variant"]:
            raise ValueError("sides=variant: give its overrides of the default run, e.g. variant='guards=none'")
        try:
            compose_default(Path("variant"), options, "variant")
        except HydraException as err:
            raise ValueError(f"variant: {' '.join(str(err).split())}") from None
    return options


# (a) ours against torchvision's ------------------------------------------------------------------------------------


def model_pair(name: str, options: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    """Our ``name`` and torchvision's same network, with the same weights, on the device (channels-last if asked)."""
    torch.manual_seed(0)
    extra = {"init_weights": True} if TORCHVISION_NAMES[name] == "googlenet" else {}  # as ours initialises
    theirs = torchvision.models.get_model(TORCHVISION_NAMES[name], weights=None, num_classes=NUM_CLASSES, **extra)
    ours = models.load_torchvision_weights(models.create_model(name, num_classes=NUM_CLASSES), theirs.state_dict())
    memory_format = torch.channels_last if options["channels_last"] else torch.preserve_format
    return ours.to(options["device"], memory_format=memory_format), theirs.to(
        options["device"], memory_format=memory_format
    )


def _outputs(result: Any) -> tuple[torch.Tensor, ...]:
    """The logits and the auxiliary heads' logits (GoogLeNet in training mode), ours a tuple, torchvision's a
    namedtuple."""
    return tuple(result) if isinstance(result, tuple) else (result,)


class Workload:
    """Training steps and inference passes of one network on one fixed batch, each call timing one of them."""

    def __init__(self, net: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, precision: str) -> None:
        self.net, self.inputs, self.labels = net, inputs, labels
        self.optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        bf16 = precision == "bf16"
        self.autocast = functools.partial(torch.autocast, inputs.device.type, torch.bfloat16) if bf16 else nullcontext

    def train_step(self) -> None:
        with self.autocast():
            loss = sum(F.cross_entropy(logits.float(), self.labels) for logits in _outputs(self.net(self.inputs)))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def infer_step(self) -> None:
        with torch.inference_mode(), self.autocast():
            self.net(self.inputs)

    def seconds(self, training: bool) -> float:
        """Seconds of one training step or inference pass."""
        self.net.train(training)
        synchronize(self.inputs.device)
        start = time.perf_counter()
        if training:
            self.train_step()
        else:
            self.infer_step()
        synchronize(self.inputs.device)
        return time.perf_counter() - start


def compare_steps(
    sides: dict[str, Workload], training: bool, minimum: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Each side's images/s (the median step) and, for each side but ``tv``, the median of the step pairs'
    ``side / tv`` throughput ratios, after a warm-up step each; ``minimum`` rounds, or as many as fill
    ``MIN_SECONDS`` a side."""
    longest = max(workload.seconds(training) for workload in sides.values())
    steps = max(minimum, min(MAX_STEPS, math.ceil(MIN_SECONDS / longest)))
    seconds = alternate({name: functools.partial(w.seconds, training) for name, w in sides.items()}, steps)
    batch = len(sides["ours"].inputs)
    rates = {name: batch / median(times) for name, times in seconds.items()}
    return rates, {name: median_ratio(seconds["tv"], times) for name, times in seconds.items() if name != "tv"}


def compare_with_torchvision(options: dict[str, Any]) -> None:
    device, batch, size = options["device"], options["batch"], options["image_size"]
    print(
        f"\n(a) ours / torchvision's: batch {batch}, {size}x{size}x3, {NUM_CLASSES} classes, {device}, precision "
        f"{options['precision']}, channels_last {options['channels_last']}; the sides' steps in turn, at least "
        f"{options['steps']} a side (more to fill {MIN_SECONDS:g} s); images/s of the median step, ratio the median "
        "of the step pairs'\n"
    )
    control = options["control"]
    columns = ["train img/s ours", "torchvision", "ours/tv", *(["tv copy/tv"] if control else [])]
    columns += [column.replace("train", "infer") for column in columns]
    print(f"| model | {' | '.join(columns)} | max abs diff |")
    print(f"|{'---|' * (len(columns) + 2)}")
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch, 3, size, size, generator=generator).to(device)
    labels = torch.randint(0, NUM_CLASSES, (batch,), generator=generator).to(device)
    if options["channels_last"]:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    compared = ["ours", *(["control"] if control else [])]  # each timed against torchvision's
    within = dict.fromkeys(compared, 0)
    for name in options["models"]:
        ours, theirs = model_pair(name, options)
        with torch.inference_mode():  # the same network: the same outputs
            difference = (ours.eval()(inputs) - theirs.eval()(inputs)).abs().max().item()
        nets = {"ours": ours, "tv": theirs} | ({"control": copy.deepcopy(theirs)} if control else {})
        sides = {side: Workload(net, inputs, labels, options["precision"]) for side, net in nets.items()}
        cells = [name]
        model_within = dict.fromkeys(compared, True)
        for training in (True, False):
            rates, ratios = compare_steps(sides, training, options["steps"])
            for side in model_within:
                model_within[side] &= 0.97 <= ratios[side] <= 1.03
            cells += [f"{rates['ours']:,.1f}", f"{rates['tv']:,.1f}", f"{ratios['ours']:.3f}"]
            cells += [f"{ratios['control']:.3f}"] if control else []
        for side, inside in model_within.items():
            within[side] += inside
        print(f"| {' | '.join(cells)} | {difference:.1e} |", flush=True)
        del ours, theirs, nets, sides
    count = len(options["models"])
    print(f"\nwithin 0.97-1.03x of torchvision in both training and inference: {within['ours']} of {count}")
    if control:
        print(f"torchvision's copy within 0.97-1.03x of torchvision (the control): {within['control']} of {count}")


# (b) the framework's overhead --------------------------------------------------------------------------------------


def cifar_shaped_sizes(options: dict[str, Any]) -> tuple[int, int]:
    """The training and validation set sizes of ``data=cifar_shaped``: ``train_size`` and a ninth of it, as CIFAR-10's
    45,000 and 5,000 (configs/data/cifar10.yaml)."""
    return options["train_size"], math.ceil(options["train_size"] / 9)


def compose_default(log_dir: Path, options: dict[str, Any], side: str = "default") -> Any:
    """The default run's composed config (as scripts/train.py composes it) with ``model=<network>``, ``options``'s data,
    device and compile switches, writing into ``log_dir``; for the ``variant`` side with its overrides too."""
    train_size, val_size = cifar_shaped_sizes(options)
    sizes = [f"data.train_size={train_size}", f"data.val_size={val_size}"] if options["data"] == "cifar_shaped" else []
    overrides = [
        f"model={options['network']}",
        *DATA[options["data"]],
        *sizes,
        f"paths.output_dir={log_dir}",
        f"trainer.accelerator={'gpu' if options['device'].type == 'cuda' else 'cpu'}",
        f"trainer.max_epochs={options['epochs']}",
        f"compile={str(options['compile']).lower()}",
        f"compile_mode={options['compile_mode']}",
        *(options["variant"] if side == "variant" else []),
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("train", overrides=overrides)


class LightningAlone(pl.LightningModule):
    """The minimal loop's work as a LightningModule: the network, forward and cross-entropy in ``training_step``,
    the correct answers counted in ``validation_step``, the same optimizer and scheduler; no metrics, no logging.
    What a fit of it takes beyond the minimal loop is Lightning's own loop."""

    def __init__(self, module: pl.LightningModule) -> None:
        super().__init__()
        self.net = module.net
        self.optimizer_factory, self.scheduler_factory = module.optimizer_factory, module.scheduler_factory
        self.correct = torch.zeros((), dtype=torch.long)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        return F.cross_entropy(self.net(images), labels)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        self.correct += (self.net(images).argmax(dim=1) == labels).sum()

    def on_validation_epoch_end(self) -> None:
        self.correct.item()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.net.parameters())
        return [optimizer], [self.scheduler_factory(optimizer)] if self.scheduler_factory else []


def lightning_epoch(log_dir: Path, options: dict[str, Any], side: str) -> float:
    """Seconds per epoch (training and validation) of a Lightning fit of the default run, after its first epoch.

    ``side``: ``default``, the default run's Trainer with its callbacks, guards, logger and checkpoints, as
    ``training.tasks.train`` builds them (``run_callbacks``; the progress bar drawing into /dev/null, the model
    summary, printed once before the first epoch, left out);
    ``bare``, the default run's module on a Trainer without callbacks, logger or checkpoints; ``alone``,
    ``LightningAlone`` on such a Trainer. Under ``compile`` the network is compiled as ``compile=true`` does.
    """
    cfg = compose_default(log_dir, options, side)
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule, module = build(cfg)
    if side == "alone":
        module = LightningAlone(module)
    clock = Clock()
    if side not in ("default", "variant"):
        speed = [SpeedSwitches(compile=True, compile_mode=cfg.compile_mode)] if cfg.compile else []
        callbacks, loggers = [*speed, clock], False
        switches = {"enable_checkpointing": False, "enable_progress_bar": False}
    else:
        if cfg.callbacks.get("model_summary"):
            cfg.callbacks.model_summary = None
        drawn_nowhere = {"console_kwargs": {"file": open(os.devnull, "w")}}  # noqa: SIM115 (closed with the process)
        callbacks = [*run_callbacks(cfg, module, progress_bar=drawn_nowhere), clock]
        loggers, switches = [instantiate(node, f"logger.{key}") for key, node in cfg.logger.items() if node], {}
    trainer = instantiate(
        cfg.trainer, "trainer", callbacks=callbacks, logger=loggers, enable_model_summary=False, **switches
    )
    trainer.fit(module, datamodule=datamodule)
    return clock.epoch_seconds / (cfg.trainer.max_epochs - 1)


def minimal_epoch(log_dir: Path, options: dict[str, Any]) -> float:
    """Seconds per epoch, after the first, of a hand-written loop over the default run's data, network and
    optimizer: for each batch the whole-batch augmentation, forward, cross-entropy, backward and step; then the
    validation batches' correct answers; then the scheduler's step. On a GPU the data is held there as the
    Lightning sides hold it (the in-memory fast path); under ``compile`` the network is compiled the same way."""
    cfg = compose_default(log_dir, options)
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule, module = build(cfg)
    device = options["device"]
    net = module.net.to(device)
    if cfg.compile:
        net.compile(**compile_arguments(cfg.compile_mode))
    optimizer = module.optimizer_factory(module.parameter_groups())
    scheduler = module.scheduler_factory(optimizer) if module.scheduler_factory else None
    train_loader, val_loader = datamodule.train_dataloader(), datamodule.val_dataloader()
    for loader in (train_loader, val_loader):  # the fast path gathers its batches where the tensors are
        dataset = getattr(loader.collate_fn, "dataset", None)
        if dataset is not None:
            dataset.images, dataset.labels = dataset.images.to(device), dataset.labels.to(device)
    seconds = []
    for _ in range(cfg.trainer.max_epochs):
        synchronize(device)
        start = time.perf_counter()
        net.train()
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            loss = F.cross_entropy(net(datamodule.batch_transform(images, train=True)), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        correct = torch.zeros((), dtype=torch.long, device=device)
        with torch.no_grad():
            for images, labels in val_loader:
                images, labels = images.to(device), labels.to(device)
                correct += (net(datamodule.batch_transform(images, train=False)).argmax(dim=1) == labels).sum()
        correct.item()
        if scheduler is not None:
            scheduler.step()
        seconds.append(time.perf_counter() - start)
    return sum(seconds[1:]) / (cfg.trainer.max_epochs - 1)


def compare_with_minimal_loop(options: dict[str, Any]) -> None:
    epochs, rounds, network = options["epochs"], options["rounds"], options["network"]
    if epochs < 2:
        raise ValueError("epochs: the first epoch is not timed; give 2 or more")
    train_batches, val_batches = (math.ceil(size / 128) for size in cifar_shaped_sizes(options))
    data = {
        "digits": "the bundled digits (batch 32, 40 training and 6 validation batches an epoch)",
        "cifar_shaped": (
            f"CIFAR-shaped data (batch 128, {train_batches} training and {val_batches} validation batches an epoch)"
        ),
    }
    compiled = f", compiled (mode {options['compile_mode']})" if options["compile"] else ""
    print(
        f"\n(b) {network} on {data[options['data']]}, {options['device']}{compiled}: s/epoch, {epochs} epochs a fit, "
        f"the first left out; {rounds} rounds, the median of the rounds' ratios\n"
    )
    print("| Lightning side | s/epoch Lightning | minimal loop | Lightning / minimal |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(10**6))

        def fresh() -> Path:
            return Path(tmp) / str(next(counter))

        times = alternate(
            {side: lambda side=side: lightning_epoch(fresh(), options, side) for side in options["sides"]}
            | {"minimal": lambda: minimal_epoch(fresh(), options)},
            rounds,
        )
        for side in options["sides"]:
            ratio = median_ratio(times[side], times["minimal"])
            name = f"{SIDES[side]} {';'.join(options['variant'])}" if side == "variant" else SIDES[side]
            print(f"| {name} | {median(times[side]):.3f} | {median(times['minimal']):.3f} | {ratio:.2f}x |", flush=True)


# (c) data loading --------------------------------------------------------------------------------------------------


def compare_data_paths(options: dict[str, Any]) -> None:
    print(
        f"\n(c) CIFAR-shaped data through the cifar preset, batch {options['data_batch']}, {options['data_batches']} "
        f"batches a round, {options['rounds']} rounds; per-image path with {options['workers']} DataLoader workers\n"
    )
    results = compare_paths(options["data_batches"], options["data_batch"], options["rounds"], options["workers"])
    print("| per-image samples/s | fast path samples/s | fast / per-image |")
    print("|---|---|---|")
    print(f"| {results['per-image']:,.0f} | {results['fast path']:,.0f} | {results['fast path / per-image']:.1f}x |")


def main(args: list[str]) -> None:
    options = parse_options(args)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)  # tables, not each fit's banner
    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{platform.processor() or platform.machine()}, {available_cpus()} CPU cores, {torch.get_num_threads()} threads"
        + (f", {torch.cuda.get_device_name(options['device'])}" if options["device"].type == "cuda" else "")
    )
    parts: dict[str, Callable[[dict[str, Any]], None]] = {
        "a": compare_with_torchvision, "b": compare_with_minimal_loop, "c": compare_data_paths,
    }  # fmt: skip
    for part in options["parts"]:
        parts[part](options)


if __name__ == "__main__":
    run_plain(main, ValueError)
