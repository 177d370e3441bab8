"""Using a trained image classifier outside Lightning: ``load_model(ckpt_path)`` and what ``scripts/predict.py`` runs.

``load_model`` rebuilds the network from the run config in a checkpoint of ``scripts/train.py``, loads its weights
(the EMA average where the run kept one, as evaluation uses) and puts it in eval mode, and rebuilds the data set's
evaluation preprocessing from the checkpoint too: any PIL image is converted to the model's channels (grey or RGB),
sized as the data set's evaluation sizes its images (an image folder's or a sizing preset's shorter side to 256/224
of the input size and the centre crop, or its ten crops; the in-memory sets' whole image resized to the input
size) and normalised with the statistics of the training run, which checkpoints keep along with the class names.
Older checkpoints without them read the training split to compute the statistics, and name the classes "0", "1", ...
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image, ImageOps
from rich.console import Console
from rich.table import Table
from torch import nn
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from data.augment import SIZING_PRESETS, eval_transform
from data.images import MODES, open_image, to_model_mode, why_unreadable
from data.normalize import Normalizer
from training.checkpoint_io import write_record
from training.classifier import Classifier
from training.config import UserError, instantiate
from training.tasks import build_net, load_checkpoint

console = Console(soft_wrap=True)


@dataclass
class LoadedModel:
    """A trained network in eval mode and how its inputs are prepared.

    ``transform`` turns a PIL image into the network's input, (C, H, W), or (K, C, H, W) for K crops whose softmax
    outputs are averaged; it ends with ``normalizer``. ``input_size`` is (H, W) and ``in_channels`` C.
    """

    net: nn.Module
    transform: v2.Compose
    normalizer: Normalizer
    input_size: tuple[int, int]
    in_channels: int
    class_names: list[str]
    run_config: dict[str, Any]

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """A batch of network inputs from PIL images of any mode and size."""
        return torch.stack([self.transform(image) for image in images])

    @torch.no_grad()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, classes) of a preprocessed batch, the softmax averaged over any crops."""
        batch = batch.to(self.device)
        logits = self.net(batch.flatten(0, 1) if batch.dim() == 5 else batch).float()
        return logits.softmax(dim=-1).view(len(batch), -1, logits.shape[-1]).mean(dim=1)


class ConvertMode:
    """A PIL image of any mode (palette, RGBA, CMYK, 16-bit, ...) in 8-bit grey (1 channel) or RGB (3 channels), as
    ``data=imagefolder`` reads its files (``data.images.to_model_mode``: ``ImageModeError`` for float and 32-bit)."""

    def __init__(self, channels: int) -> None:
        self.mode = MODES[channels]

    def __call__(self, image: Image.Image) -> Image.Image:
        return to_model_mode(image, self.mode)


def _class_names(checkpoint: dict[str, Any], datamodule: Any, num_classes: int) -> list[str]:
    names = checkpoint.get("class_names") or getattr(datamodule, "class_names", None)
    return [str(name) for name in names] if names else [str(index) for index in range(num_classes)]


def _normalizer(checkpoint: dict[str, Any], datamodule: Any, path: Path) -> Normalizer:
    """The run's input normalisation: kept in the checkpoint, or, for older checkpoints, from the training split."""
    stored = checkpoint.get("normalizer")
    if stored is not None:
        return Normalizer(stored["mean"], stored["std"])
    try:
        datamodule.prepare_data()
        datamodule.setup("test")
    except (FileNotFoundError, ValueError) as err:
        raise UserError(
            f"{path} predates checkpoints that keep their input normalisation, which its training data would give: "
            f"{err}"
        ) from err
    normalizer = getattr(datamodule, "normalizer", None)
    if not isinstance(normalizer, Normalizer):
        raise UserError(f"{path}: its data set ({type(datamodule).__name__}) has no normaliser to prepare images with")
    return normalizer


def _size_steps(datamodule: Any) -> list[Any]:
    """From a PIL image to a float tensor of the input size, as the data set's evaluation sizes its images."""
    size, crop = datamodule.image_size, getattr(datamodule, "eval_crop", None)
    if crop is not None or getattr(datamodule, "augment", None) in SIZING_PRESETS:
        return [eval_transform(size, crop or "center")]
    pad = getattr(datamodule, "pad", 0)  # the in-memory sets' images centred in a larger field (data.pad)
    resize = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Resize([size, size], antialias=True)]
    return [*resize, v2.Pad(pad)] if pad else resize


def load_model(ckpt_path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """The network of a ``scripts/train.py`` checkpoint in eval mode on ``device``, with its preprocessing.

    Only image models are taken (the data's inputs are (C, H, W) images). Raises ``UserError`` for a file that is
    missing, not such a checkpoint, holds code (read with ``weights_only=True``), or whose weights do not fit.
    """
    path = Path(ckpt_path)
    checkpoint = load_checkpoint(path)
    run_config = checkpoint["hyper_parameters"]["run_config"]
    cfg = OmegaConf.create(run_config)
    datamodule = instantiate(cfg.data, "data")  # the constructors check their settings without reading any files
    if len(datamodule.input_shape) != 3:
        shape = "x".join(map(str, datamodule.input_shape))
        raise UserError(
            f"{path} was trained on {cfg.data._target_}, whose inputs ({shape}) are not images; load_model, predict "
            "and export take image models"
        )
    if cfg.model.get("pretrained") is not None:  # the checkpoint's weights replace them: the file may be gone
        cfg.model.pretrained = None
    net = build_net(cfg)
    weights = {
        key.removeprefix("net."): value for key, value in checkpoint["state_dict"].items() if key.startswith("net.")
    }
    try:
        net.load_state_dict(weights)
    except RuntimeError as err:
        raise UserError(f"{path}: weights do not fit the model in its config: {err}") from err
    channels, height, width = datamodule.input_shape
    normalizer = _normalizer(checkpoint, datamodule, path)
    transform = v2.Compose([ImageOps.exif_transpose, ConvertMode(channels), *_size_steps(datamodule), normalizer])
    try:
        device = torch.device(device)
        net = net.to(device).eval()
    except (RuntimeError, AssertionError) as err:  # an unknown device, or CUDA without a GPU
        raise UserError(f"device: {err}") from err
    return LoadedModel(
        net=net,
        transform=transform,
        normalizer=normalizer,
        input_size=(height, width),
        in_channels=channels,
        class_names=_class_names(checkpoint, datamodule, int(cfg.model.num_classes)),
        run_config=run_config,
    )


def image_files(inputs: str | Sequence[str]) -> list[Path]:
    """The image files that ``inputs`` names: files, and the images in folders (and their subfolders), sorted."""
    files: list[Path] = []
    for name in [inputs] if isinstance(inputs, str) else list(inputs):
        path = Path(str(name))
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
            if not found:
                raise UserError(f"inputs: no images ({', '.join(IMG_EXTENSIONS)}) in the folder {path}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"inputs: no such file or folder: {path}")
    if not files:
        raise UserError("inputs: give an image, a folder of images, or a list of them: inputs=[a.png,b.png]")
    return files


def network_inputs(model: LoadedModel, files: Sequence[Path]) -> tuple[list[Path], torch.Tensor | None, list[str]]:
    """The files that could be read, their network inputs stacked (``None`` if none), and a line for each of the
    others naming the file and why it could not be read or used."""
    read, inputs, unreadable = [], [], []
    for path in files:
        try:
            inputs.append(model.transform(open_image(path)))
        except Exception as err:  # whatever PIL raises for a file it cannot decode, or pixels it cannot use
            unreadable.append(f"cannot read {path}: {why_unreadable(err)}")
        else:
            read.append(path)
    return read, torch.stack(inputs) if inputs else None, unreadable


def require(cfg: DictConfig, *keys: str) -> None:
    """Raise ``UserError`` for the first of ``keys`` that the command line left unset (``???`` in the config)."""
    for key in keys:
        if OmegaConf.is_missing(cfg, key):
            raise UserError(f"{key} is required: give it on the command line, {key}=...")


def predict(cfg: DictConfig) -> list[dict[str, Any]]:
    """Print the ``top_k`` classes of each image in ``cfg.inputs`` with their probabilities, as a table; write them
    to ``predictions.json`` in the run's directory and return them. The images that cannot be read are left out,
    and then ``UserError`` names the one with why, or counts them, each named with why on stderr before."""
    require(cfg, "ckpt_path", "inputs")
    top_k = cfg.get("top_k")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise UserError(f"top_k: expected a positive integer, got {top_k!r}")
    batch_size = cfg.get("batch_size")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise UserError(f"batch_size: expected a positive integer, got {batch_size!r}")
    inputs = cfg.inputs if isinstance(cfg.inputs, str) else [str(name) for name in cfg.inputs]
    files = image_files(inputs)  # every input is found before the model is loaded
    model = load_model(str(cfg.ckpt_path), cfg.device)
    module = hydra.utils.get_class(model.run_config["module"]["_target_"])
    if not issubclass(module, Classifier):
        raise UserError(
            f"{cfg.ckpt_path}: predict gives the class probabilities of a Classifier, not a {module.__name__}"
        )
    predictions, unreadable = [], []
    for start in range(0, len(files), batch_size):
        chunk, batch, errors = network_inputs(model, files[start : start + batch_size])
        unreadable += errors
        if batch is None:
            continue
        probabilities = model.probabilities(batch).cpu()
        values, indices = probabilities.topk(min(top_k, probabilities.shape[-1]), dim=-1)
        for path, top_values, top_indices in zip(chunk, values.tolist(), indices.tolist(), strict=True):
            classes = [
                {"class": model.class_names[index], "index": index, "probability": value}
                for value, index in zip(top_values, top_indices, strict=True)
            ]
            predictions.append({"image": str(path), "top": classes})

    gone = f"inputs: {unreadable[0]}" if len(unreadable) == 1 else ""  # what the error line says
    if len(unreadable) > 1:
        print("\n".join(unreadable), file=sys.stderr)
        gone = f"inputs: {len(unreadable)} of {len(files)} images could not be read (each is named above)"
    if unreadable and not predictions:
        raise UserError(gone)
    table = Table("image", "rank", "class", "probability", box=None, title=f"top-{top_k} of {cfg.ckpt_path}")
    for prediction in predictions:
        for rank, entry in enumerate(prediction["top"], start=1):
            table.add_row(
                prediction["image"] if rank == 1 else "", str(rank), entry["class"], f"{entry['probability']:.4f}"
            )
    console.print(table)
    output = Path(cfg.paths.output_dir) / "predictions.json"
    write_record(output, json.dumps(predictions, indent=2) + "\n", "the predictions are printed above")
    console.print(f"predictions written to {output}")
    if unreadable:
        raise UserError(f"{gone}; the other {len(predictions)} are predicted in {output}")
    return predictions
