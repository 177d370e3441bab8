"""Training step and epoch time with the monitoring callbacks of ``configs/callbacks/default.yaml`` and without.

    python scripts/benchmark_monitoring.py [epochs=5] [rounds=11] [resnet_batches=0]

The default run's setting (LeNet-5 on the digits, batch 32, 40 steps an epoch, TensorBoard) is fitted for
``epochs`` epochs twice per round, once with the default callbacks of ``training/monitoring.py`` and once
without, for ``rounds`` rounds, the side that goes first alternating. The overhead is the median of the rounds'
ratios, so it holds on a noisy machine; the times are the medians of each side. ``resnet_batches`` above 0
adds ResNet-20 on CIFAR-shaped random data (batch 128, that many batches an epoch, 128 validation images).
Both sides log to TensorBoard as the default run does; checkpoints, progress bar and model summary are off.
A step's time is the epoch's training part (data, forward, backward, update and the per-step logging) over its
steps; an epoch's adds the validation and the once-an-epoch figures and images. Both leave the first epoch out,
which pays on both sides for first allocations and lazily initialised libraries, so ``epochs`` must be 2 or more;
with 5, the layer statistics of the 4 epochs timed (160 steps) are those of step 100.
"""

from __future__ import annotations

import gc
import logging
import platform
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.warnings import PossibleUserWarning

from data.base import available_cpus
from training.cli import CONFIG_DIR, parse_int_options, run_plain
from training.config import instantiate
from training.tasks import build
from training.timing import Clock, median

DEFAULTS = {"epochs": 5, "rounds": 11, "resnet_batches": 0}
RESNET_BATCH, RESNET_VAL = 128, 128


def fit(overrides: list[str], monitored: bool, log_dir: Path) -> tuple[float, float]:
    """Milliseconds per training step and seconds per epoch of one fit, after its first epoch."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=[f"paths.output_dir={log_dir}", "trainer.accelerator=cpu", *overrides])
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule, module = build(cfg)
    callbacks: list[Any] = [
        instantiate(node, f"callbacks.{key}")
        for key, node in cfg.callbacks.items()
        if monitored and node and str(node._target_).startswith("training.monitoring.")
    ]
    clock = Clock()
    trainer = instantiate(
        cfg.trainer,
        "trainer",
        callbacks=[*callbacks, clock],
        logger=TensorBoardLogger(log_dir, name="", version=""),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    gc.collect()  # the earlier fits' garbage, which a full collection inside this fit's timing would sweep
    trainer.fit(module, datamodule=datamodule)
    return 1000 * clock.training_seconds / clock.steps, clock.epoch_seconds / (trainer.current_epoch - 1)


def main(args: list[str]) -> None:
    options = parse_int_options(args, DEFAULTS)
    if options["epochs"] < 2:
        raise ValueError("epochs: the first epoch is not timed; give 2 or more")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)  # one table, not each fit's banner
    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    epochs = f"trainer.max_epochs={options['epochs']}"
    settings = {"LeNet-5, digits, batch 32": [epochs]}
    if options["resnet_batches"]:
        train_size = options["resnet_batches"] * RESNET_BATCH
        settings["ResNet-20, CIFAR-shaped random data, batch 128"] = [
            epochs, "model=resnet20", "data=fake", f"data.batch_size={RESNET_BATCH}", f"data.train_size={train_size}",
            f"data.val_size={RESNET_VAL}", "data.num_workers=0",
        ]  # fmt: skip
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {available_cpus()} CPU cores, "
        f"{torch.get_num_threads()} threads; {options['epochs']} epochs a fit, {options['rounds']} rounds"
    )
    print("| setting | ms/step plain | monitored | overhead | s/epoch plain | monitored | overhead |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for number, (name, overrides) in enumerate(settings.items()):
            times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for index in range(options["rounds"]):  # alternate, first one side then the other, on the same machine
                for monitored in (index % 2 == 1, index % 2 == 0):
                    times[monitored].append(fit(overrides, monitored, Path(tmp) / f"{number}-{index}-{monitored:d}"))
            cells = [name]
            for kind, digits in ((0, 2), (1, 3)):  # ms/step, s/epoch
                plain, monitored = ([fit_times[kind] for fit_times in times[side]] for side in (False, True))
                overhead = median([m / p - 1 for p, m in zip(plain, monitored, strict=True)])  # each round's ratio
                cells += [f"{median(plain):.{digits}f}", f"{median(monitored):.{digits}f}", f"{overhead:+.1%}"]
            print(f"| {' | '.join(cells)} |")


if __name__ == "__main__":
    run_plain(main, ValueError)
