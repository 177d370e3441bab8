"""Shared fixtures: Hydra configs composed with the compose API, a way to run the scripts, and the checks that the
model families' tests share."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
# overrides for a run through scripts/train.py's path on fake data: one batch of training, validation and test
FAST_DATA = ["data=fake", "data.batch_size=4", "data.train_size=4", "data.val_size=4", "data.test_size=4", "debug=fdr"]


def compose_config(config_name: str, output_dir: Path, overrides: list[str] = ()) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` as ``hydra.main`` would, writing into ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(config_name=config_name, return_hydra_config=True, overrides=list(overrides))
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg


@pytest.fixture
def train_config(tmp_path: Path) -> Iterator[callable]:
    """Compose the training config with fast settings; call it with extra overrides."""

    def make(*overrides: str) -> DictConfig:
        fast = ["trainer.accelerator=cpu", "callbacks.progress_bar=null", "callbacks.model_summary=null"]
        return compose_config("train", tmp_path / "run", [*fast, *overrides])

    yield make
    GlobalHydra.instance().clear()


def run_script(script: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``scripts/<script>`` as a user would, from ``cwd``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def model_inputs(datamodule, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """All of one split's batches as the model receives them, through either path of an in-memory DataModule."""
    images, labels = [], []
    for batch_images, batch_labels in getattr(datamodule, f"{split}_dataloader")():
        if getattr(datamodule, "fast_path", False):
            batch_images = datamodule.batch_transform(batch_images, train=split == "train")
        images.append(batch_images)
        labels.append(batch_labels)
    return torch.cat(images), torch.cat(labels)


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """What the test goes on to build: the optimizers created (class names, counted in ``Optimizer.__init__``) and
    the stages the in-memory data sets are set up for (``setup``)."""
    from data.in_memory import InMemoryDataModule

    record: dict[str, list[str]] = {"optimizers": [], "stages": []}
    optimizer_init, setup = torch.optim.Optimizer.__init__, InMemoryDataModule.setup

    def counted_init(self, *args, **kwargs) -> None:
        record["optimizers"].append(type(self).__name__)
        optimizer_init(self, *args, **kwargs)

    def recorded_setup(self, stage: str | None = None) -> None:
        record["stages"].append(stage)
        setup(self, stage)

    monkeypatch.setattr(torch.optim.Optimizer, "__init__", counted_init)
    monkeypatch.setattr(InMemoryDataModule, "setup", recorded_setup)
    return record


def build_on_meta(name: str, **options: object) -> nn.Module:
    """The registered model ``name`` built on the meta device: its parameters have shapes but no memory or values,
    so building even a 100M-parameter network is instant (for counts, shapes and multiply-adds)."""
    from models import create_model

    with torch.device("meta"):
        return create_model(name, **options)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule whose path is ``name``, else the one whose path ends in ``.name``: ``conv1`` finds
    ``features.conv1``."""
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    found = [module for path, module in modules.items() if path.endswith(f".{name}")]
    assert len(found) == 1, f"{len(found)} layers named {name!r} in {type(model).__name__}"
    return found[0]


def record_output_shapes(model: nn.Module, layers: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """Hook each layer (found by ``find_layer``); the dict fills with its output's shape less the batch dimension on
    the next forward pass."""
    shapes = {}
    for name in layers:
        find_layer(model, name).register_forward_hook(
            lambda module, inputs, output, name=name: shapes.__setitem__(name, tuple(output.shape[1:]))
        )
    return shapes


def assert_same_outputs(ours: nn.Module, theirs: nn.Module, x: torch.Tensor) -> None:
    """Both models, in eval mode, give the same outputs on ``x`` (to 1e-5)."""
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


def check_torchvision_round_trip(name: str, size: int) -> None:
    """Our ``name`` with torchvision's randomly initialised weights loaded gives torchvision's outputs."""
    import torchvision

    from models import create_model, load_torchvision_weights

    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None, num_classes=10)
    ours = create_model(name, num_classes=10)
    load_torchvision_weights(ours, theirs.state_dict())
    assert_same_outputs(ours, theirs, torch.randn(1, 3, size, size))


def check_model_config(name: str) -> None:
    """``configs/model/<name>.yaml`` lists every argument of the builder ``name``, with the builder's default for each
    but the data's ``num_classes`` and ``in_channels``, and ``pretrained: null``."""
    from models import get_model_builder

    config = OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml")
    parameters = inspect.signature(get_model_builder(name)).parameters
    assert config.name == name and set(config) == {"_target_", "name", "pretrained", *parameters}
    assert config.pretrained is None
    knobs = [key for key in parameters if key not in ("num_classes", "in_channels")]
    assert {key: config[key] for key in knobs} == {key: parameters[key].default for key in knobs}
