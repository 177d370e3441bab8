"""See inside a trained network: what ``scripts/visualize.py ckpt_path=<checkpoint> method=<m>`` runs.

Captum does the attribution arithmetic (Simonyan et al. 2014's saliency, guided backpropagation, Grad-CAM,
integrated gradients, and the occlusion of Zeiler & Fergus 2014's Figure 7); ``training.deconvnet`` does Zeiler &
Fergus's own procedures (the deconvnet projection, Figure 2's top patches); scikit-learn's t-SNE embeds the
penultimate features. This module picks what they explain (the predicted or the true class, the layer, the unit,
the baselines), renders one figure per method and writes it as a PNG file beside the checkpoint and as an image in
the run's TensorBoard logs.
"""

from __future__ import annotations

import copy
import io
import itertools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
from captum.attr import (
    GuidedBackprop,
    IntegratedGradients,
    LayerActivation,
    LayerAttribution,
    LayerGradCam,
    Occlusion,
    Saliency,
)
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from rich.console import Console
from sklearn.manifold import TSNE
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter

from data.normalize import Normalizer
from models import did_you_mean
from training import deconvnet as zeiler_fergus
from training.classifier import Classifier
from training.config import UserError, instantiate
from training.inference import LoadedModel, image_files, load_model, network_inputs, require

console = Console(soft_wrap=True)

Panels = dict[str, Tensor]  # a panel's title -> its maps, (N, H, W) heat maps or (N, C, H, W) images


@dataclass
class Inspection:
    """What a method looks at: the network (``inspectable``), its inputs (N, C, H, W) as the network takes them,
    the class each map explains (``targets``), the true classes where known, and the method's settings."""

    net: nn.Module
    images: Tensor
    targets: Tensor
    normalizer: Normalizer
    labels: Tensor | None = None
    class_names: list[str] | None = None
    layer: str | None = None
    unit: int | None = None
    window: int | None = None  # occlusion: the grey square's side (None: a quarter of the image's)
    stride: int | None = None  # occlusion: its step (None: a quarter of the window)
    steps: int = 32  # integrated gradients: points of the path integral
    units: int = 16  # top_patches: the first channels of the layer
    k: int = 9  # top_patches: strongest activations per channel

    def pixels(self, value: float) -> Tensor:
        """A batch like ``images`` whose every pixel is ``value`` (0 black, 0.5 grey) before normalisation."""
        blank = torch.full_like(self.images, value)
        return self.normalizer.to(blank.device)(blank).expand_as(self.images).contiguous()

    def display(self) -> Tensor:
        """The images as they were before normalisation, in [0, 1]."""
        normalizer = self.normalizer.to(self.images.device)
        return (self.images * normalizer.std + normalizer.mean).clamp(0, 1).detach()


def inspectable(net: nn.Module) -> nn.Module:
    """A copy of ``net`` in eval mode with in-place activations made out-of-place, as Captum's backward hooks need."""
    net = copy.deepcopy(net).eval()
    for module in net.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    return net


def layer_by_name(net: nn.Module, name: str) -> nn.Module:
    """``training.deconvnet.find_layer``, its refusal as a ``UserError`` naming the accepted layers."""
    try:
        return zeiler_fergus.find_layer(net, name)
    except ValueError as err:
        raise UserError(f"layer: {err}") from err


def last_feature_map(net: nn.Module, images: Tensor) -> str:
    """The name of the last layer of ``net.forward_features`` to finish with a feature map of more than one pixel
    (N, C, h, w): the last convolutional stage (ResNet's ``layer4``, AlexNet's ``features``, LeNet-5's S4)."""
    finished: list[str] = []
    hooks = [
        module.register_forward_hook(
            lambda _m, _i, output, name=name: (
                finished.append(name)
                if isinstance(output, Tensor) and output.dim() == 4 and output.shape[-1] * output.shape[-2] > 1
                else None
            )
        )
        for name, module in net.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            net.forward_features(images[:1])
    finally:
        for hook in hooks:
            hook.remove()
    if not finished:
        raise UserError(f"{type(net).__name__} has no convolutional feature maps; name a layer with layer=<name>")
    return finished[-1]


def _layer(inspection: Inspection) -> tuple[str, nn.Module]:
    name = inspection.layer or last_feature_map(inspection.net, inspection.images)
    return name, layer_by_name(inspection.net, name)


def _feature_maps(inspection: Inspection, module: nn.Module, name: str) -> Tensor:
    maps = LayerActivation(inspection.net, module).attribute(inspection.images)
    if not isinstance(maps, Tensor) or maps.dim() != 4:
        raise UserError(f"layer: {name} gives no feature maps (N, C, h, w); name a convolutional layer")
    return maps.detach()


def saliency(inspection: Inspection) -> Panels:
    """Simonyan et al. 2014, Sec. 3.1: the largest |d score / d pixel| over the channels."""
    gradients = Saliency(inspection.net).attribute(inspection.images, target=inspection.targets, abs=True)
    return {"saliency": gradients.amax(dim=1)}


def guided_backprop(inspection: Inspection) -> Panels:
    """Springenberg et al. 2015: the gradient with only the positive gradients passed back through each ReLU."""
    return {"guided backprop": GuidedBackprop(inspection.net).attribute(inspection.images, target=inspection.targets)}


def gradcam(inspection: Inspection) -> Panels:
    """Selvaraju et al. 2017: the feature maps of the last convolutional stage (or ``layer``) weighted by their mean
    gradient, rectified, upsampled to the input's size."""
    name, module = _layer(inspection)
    _feature_maps(inspection, module, name)
    cam = LayerGradCam(inspection.net, module).attribute(
        inspection.images, target=inspection.targets, relu_attributions=True
    )
    return {f"Grad-CAM of {name}": LayerAttribution.interpolate(cam, inspection.images.shape[-2:], "bilinear")[:, 0]}


def integrated_gradients(inspection: Inspection) -> Panels:
    """Sundararajan et al. 2017: the gradients integrated along the straight path from a black image, summed over the
    channels (red: for the class, blue: against it)."""
    attributions = IntegratedGradients(inspection.net).attribute(
        inspection.images, baselines=inspection.pixels(0.0), target=inspection.targets, n_steps=inspection.steps
    )
    return {"integrated gradients": attributions.sum(dim=1)}


def occlusion(inspection: Inspection) -> Panels:
    """Zeiler & Fergus 2014, Figure 7: a square of the training set's mean colour (grey for natural images, black
    for the digits) slid over the image; at each pixel, the mean over the square's
    positions covering it of (a) the explained class's probability and (b) the total activation of the strongest
    feature map of the last convolutional stage (or of ``layer``; ``unit`` picks another map)."""
    images, net = inspection.images, inspection.net
    side = min(images.shape[-2:])
    window = min(inspection.window or max(1, side // 4), side)
    stride = inspection.stride or max(1, window // 4)
    channels = images.shape[1]
    settings = {
        "sliding_window_shapes": (channels, window, window),
        "strides": (channels, stride, stride),
        "baselines": 0.0,  # the training images' mean after normalisation: grey for natural images
    }

    def probabilities(x: Tensor) -> Tensor:
        return net(x).softmax(dim=-1)

    with torch.no_grad():
        probability = probabilities(images).gather(1, inspection.targets[:, None])[:, 0]
        drop = Occlusion(probabilities).attribute(images, target=inspection.targets, **settings)
        name, module = _layer(inspection)
        totals = _feature_maps(inspection, module, name).sum(dim=(2, 3))
        units = _units(inspection, totals)

        def activation(x: Tensor) -> Tensor:
            return LayerActivation(net, module).attribute(x).sum(dim=(2, 3)).gather(1, units[:, None])[:, 0]

        fall = Occlusion(activation).attribute(images, **settings)
    return {
        "P(class), occluded": probability[:, None, None] - drop[:, 0],
        f"top unit of {name},\noccluded": totals.gather(1, units[:, None])[:, :, None] - fall[:, 0],
    }


def _units(inspection: Inspection, totals: Tensor) -> Tensor:
    """Per image, the channel ``unit`` or, without one, the channel of the largest total activation."""
    if inspection.unit is None:
        return totals.argmax(dim=1)
    if not 0 <= inspection.unit < totals.shape[1]:
        raise UserError(
            f"unit: the layer has {totals.shape[1]} channels, 0 to {totals.shape[1] - 1}; got {inspection.unit}"
        )
    return torch.full((len(totals),), inspection.unit, dtype=torch.long, device=totals.device)


def deconvnet(inspection: Inspection) -> Panels:
    """Zeiler & Fergus 2014, Sec. 2.1: the strongest activation of the layer (of channel ``unit``) projected back to
    pixel space; below a layer that is not one chain (residual additions, concatenations), the same rule through
    every branch (``training.deconvnet.deconvnet_anywhere``); the panel's title says which."""
    name, _ = _layer(inspection)
    try:
        found = zeiler_fergus.deconvnet_anywhere(inspection.net, inspection.images, name, inspection.unit)
    except ValueError as err:
        raise UserError(f"deconvnet: {err}") from err
    projection, branches = found
    return {f"deconvnet of {name}{' (through its branches)' if branches else ''}": projection.detach()}


def penultimate_features(net: nn.Module, images: Tensor, chunk: int = 256) -> Tensor:
    """What the final layer of ``net`` (``get_classifier()``) receives for each image, flattened (N, D); a
    convolutional classifier's input maps (NiN, SqueezeNet) averaged over their positions, as its head pools."""
    received: list[Tensor] = []
    hook = net.get_classifier().register_forward_pre_hook(lambda _m, inputs: received.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            for start in range(0, len(images), chunk):
                net(images[start : start + chunk])
    finally:
        hook.remove()
    features = torch.cat(received)
    return features.mean(dim=(2, 3)) if features.dim() == 4 else features.flatten(1)


def embed(features: Tensor) -> np.ndarray:
    """scikit-learn's t-SNE of the rows of ``features`` in 2-D (N, 2), seeded."""
    count = len(features)
    if count < 4:
        raise UserError(f"tsne embeds a data set: give at least 4 images, got {count}")
    perplexity = min(30.0, (count - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", random_state=0).fit_transform(features.cpu().double().numpy())


def tsne(inspection: Inspection) -> Figure:
    """Van der Maaten & Hinton 2008: the penultimate features in 2-D, coloured by the true class (the predicted one
    for image files)."""
    points = embed(penultimate_features(inspection.net, inspection.images))
    classes = (inspection.labels if inspection.labels is not None else inspection.targets).cpu().numpy()
    figure = Figure(figsize=(6, 5), layout="constrained")
    axes = figure.subplots()
    scatter = axes.scatter(points[:, 0], points[:, 1], c=classes, cmap="tab10" if classes.max() < 10 else "turbo", s=8)
    names = inspection.class_names or [str(index) for index in range(int(classes.max()) + 1)]
    handles = [
        axes.scatter([], [], color=scatter.cmap(scatter.norm(index)), s=8, label=names[index])
        for index in np.unique(classes)[:20]
    ]
    axes.legend(handles=handles, fontsize=7, loc="best", markerscale=1.5)
    coloured = "true" if inspection.labels is not None else "predicted"
    axes.set_title(f"t-SNE of the penultimate features of {len(points)} images ({coloured} class)", fontsize=9)
    axes.set_xticks([])
    axes.set_yticks([])
    return figure


def top_patches(inspection: Inspection) -> Figure:
    """Zeiler & Fergus 2014, Figure 2: for each of the first ``units`` channels of the layer, the input patches of
    its ``k`` strongest activations over the images beside their deconvnet projections
    (``training.deconvnet.top_patches``; for a network with branches, through them: the title says so)."""
    name, _ = _layer(inspection)
    batches = inspection.images.split(64)
    try:
        found = zeiler_fergus.top_patches(inspection.net, batches, name, units=inspection.units, k=inspection.k)
    except ValueError as err:
        raise UserError(f"top_patches: {err}") from err
    units, k = found.activations.shape
    figure = Figure(figsize=(0.6 * 2 * k + 0.6, 0.6 * units + 0.4), layout="constrained")
    axes = figure.subplots(units, 2 * k, squeeze=False)
    for unit, column in itertools.product(range(units), range(2 * k)):
        source = found.patches if column < k else found.projections
        _show_image(axes[unit, column], source[unit, column % k])
        if column == 0:
            axes[unit, column].set_ylabel(str(unit), fontsize=6)
    branches = " (through its branches)" if found.through_branches else ""
    figure.suptitle(f"{name}: the top {k} patches of each unit, then their deconvnet projections{branches}", fontsize=8)
    return figure


def _show_image(axes: object, image: Tensor) -> None:
    """An image of any range scaled to [0, 1] (a signed one about grey), one channel in grey."""
    image = image.detach().float().cpu()
    scale = image.abs().max().clamp_min(1e-12)
    shown = 0.5 + image / (2 * scale) if image.min() < 0 else image / scale
    array = shown.permute(1, 2, 0).numpy()
    axes.imshow(array[..., 0] if array.shape[-1] == 1 else array, cmap="gray", vmin=0, vmax=1)
    axes.set_xticks([])
    axes.set_yticks([])


def _show_heat(axes: object, heat: Tensor, picture: Tensor) -> None:
    """A heat map over the grey picture: signed maps in blue and red about zero, others from dark to bright."""
    heat = heat.detach().float().cpu().numpy()
    grey = picture.mean(dim=0).cpu().numpy()
    axes.imshow(grey, cmap="gray", vmin=0, vmax=1)
    if heat.min() < 0:
        bound = max(abs(heat.min()), abs(heat.max()), 1e-12)
        axes.imshow(heat, cmap="bwr", vmin=-bound, vmax=bound, alpha=0.7)
    else:
        axes.imshow(heat, cmap="inferno", alpha=0.6)
    axes.set_xticks([])
    axes.set_yticks([])


def map_figure(inspection: Inspection, panels: Panels) -> Figure:
    """One row per image: the image, then each panel's map of it."""
    pictures = inspection.display()
    rows, columns = len(pictures), 1 + len(panels)
    figure = Figure(figsize=(1.8 * columns, 1.8 * rows + 0.3), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    names = inspection.class_names
    for row, picture in enumerate(pictures):
        _show_image(axes[row, 0], picture)
        target = int(inspection.targets[row])
        label = f"explains {names[target] if names else target}"
        if inspection.labels is not None:
            label += f" (true {names[int(inspection.labels[row])] if names else int(inspection.labels[row])})"
        axes[row, 0].set_ylabel(label, fontsize=7)
        for column, (title, maps) in enumerate(panels.items(), start=1):
            show = _show_image if maps.dim() == 4 else _show_heat
            show(axes[row, column], maps[row], *([] if maps.dim() == 4 else [picture]))
            if row == 0:
                axes[row, column].set_title(title, fontsize=8)
    return figure


# The methods that map each image: name -> its panels
MAPS: dict[str, Callable[[Inspection], Panels]] = {
    "saliency": saliency,
    "guided_backprop": guided_backprop,
    "gradcam": gradcam,
    "integrated_gradients": integrated_gradients,
    "occlusion": occlusion,
    "deconvnet": deconvnet,
}
# Every method of scripts/visualize.py: name -> its figure
METHODS: dict[str, Callable[[Inspection], Figure]] = {
    **{name: (lambda inspection, maps=maps: map_figure(inspection, maps(inspection))) for name, maps in MAPS.items()},
    "tsne": tsne,
    "top_patches": top_patches,
}
# How many of the test split's images a method takes by default: a data set for the two that need one
DATA_SET_METHODS = {"tsne": 500, "top_patches": 500}
DEFAULT_IMAGES = 8


def split_images(model: LoadedModel, count: int) -> tuple[Tensor, Tensor]:
    """The first ``count`` images of the checkpoint's test split as the network takes them, and their classes."""
    datamodule = instantiate(OmegaConf.create(model.run_config).data, "data")
    try:
        datamodule.prepare_data()
        datamodule.setup("test")
    except (FileNotFoundError, ValueError) as err:
        raise UserError(f"data: {err} (give images with inputs=<image|folder|list>)") from err
    images: list[Tensor] = []
    labels: list[Tensor] = []
    for batch, classes in _limited(datamodule.test_dataloader(), count):
        if getattr(datamodule, "fast_path", False):
            batch = datamodule.batch_transform(batch, train=False)
        images.append(batch)
        labels.append(classes)
    return torch.cat(images)[:count], torch.cat(labels)[:count]


def _limited(loader: object, count: int) -> Iterator[tuple[Tensor, Tensor]]:
    """The loader's batches until they hold ``count`` examples."""
    seen = 0
    for batch, classes in loader:
        yield batch, classes
        seen += len(batch)
        if seen >= count:
            return


def write_new(folder: Path, stem: str, data: bytes) -> Path:
    """Write ``data`` to ``folder/stem.png``, or ``stem-2.png``, ``stem-3.png``, ... the first name not yet taken:
    an earlier file is never overwritten (each name is created exclusively)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for number in itertools.count(1):
            path = folder / (f"{stem}.png" if number == 1 else f"{stem}-{number}.png")
            try:
                with path.open("xb") as file:
                    file.write(data)
            except FileExistsError:
                continue
            return path
    except OSError as err:
        raise UserError(f"out: cannot write into {folder}: {err.strerror or err}") from err


def tensorboard_dir(ckpt_path: Path) -> Path | None:
    """The TensorBoard folder of the run that wrote ``ckpt_path`` (``<run>/checkpoints/<file>.ckpt`` beside
    ``<run>/tensorboard``), or ``None`` when that run kept none."""
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
    folder = run_dir / "tensorboard"
    return folder if folder.is_dir() else None


def _positive(cfg: DictConfig, key: str, none_ok: bool = True) -> int | None:
    value = cfg.get(key)
    if value is None and none_ok:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"{key}: expected a positive integer{' or null' if none_ok else ''}, got {value!r}")
    return value


def _check_method(method: object) -> str:
    if method in METHODS:
        return str(method)
    hint = did_you_mean(str(method), list(METHODS))
    raise UserError(f"unknown method {method!r}; {hint}accepted: {', '.join(METHODS)}")


def _inputs(cfg: DictConfig, model: LoadedModel, count: int) -> tuple[Tensor, Tensor | None]:
    """The first ``count`` network inputs and their true classes: the images of ``inputs`` (no classes), or the
    test split's."""
    if cfg.get("inputs") is None:
        return split_images(model, count)
    names = cfg.inputs if isinstance(cfg.inputs, str) else [str(name) for name in cfg.inputs]
    _, images, unreadable = network_inputs(model, image_files(names))
    if unreadable:
        raise UserError(
            f"inputs: {unreadable[0]}" + (f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else "")
        )
    if images.dim() != 4:
        raise UserError(f"{cfg.ckpt_path}: its data set evaluates several crops per image; visualize takes one")
    return images[:count], None


def visualize(cfg: DictConfig) -> Path:
    """Run ``cfg.method`` on the images of ``cfg.inputs`` (or the first ``cfg.count`` of the checkpoint's test
    split), write its figure as a new PNG file in ``cfg.out`` (by default beside the checkpoint) and to the run's
    TensorBoard logs, print where, and return the PNG's path."""
    require(cfg, "ckpt_path", "method")
    method = _check_method(cfg.method)
    target = "true" if cfg.get("target") is True else cfg.get("target")  # Hydra reads target=true as a boolean
    if target not in ("predicted", "true"):
        raise UserError(f"target: expected predicted or true, got {target!r}")
    if target == "true" and cfg.get("inputs") is not None:
        raise UserError("target=true needs the test split's classes: leave inputs out, or explain target=predicted")
    unit = cfg.get("unit")
    if unit is not None and (not isinstance(unit, int) or isinstance(unit, bool) or unit < 0):
        raise UserError(f"unit: expected a channel index (0, 1, ...) or null, got {unit!r}")
    count = _positive(cfg, "count") or DATA_SET_METHODS.get(method, DEFAULT_IMAGES)
    settings = {key: _positive(cfg, key) for key in ("window", "stride")}
    settings |= {key: _positive(cfg, key, none_ok=False) for key in ("steps", "units", "k")}
    ckpt_path = Path(str(cfg.ckpt_path))
    model = load_model(ckpt_path, cfg.device)
    if not issubclass(hydra.utils.get_class(model.run_config["module"]["_target_"]), Classifier):
        raise UserError(f"{ckpt_path}: visualize explains a Classifier's classes; this checkpoint holds no classifier")
    net = inspectable(model.net)
    layer = None if cfg.get("layer") is None else str(cfg.layer)
    if layer is not None:
        layer_by_name(net, layer)  # refused before any image is read
    images, labels = _inputs(cfg, model, count)
    images = images.to(model.device)
    labels = None if labels is None else labels.to(model.device)
    with torch.no_grad():
        predicted = torch.cat([net(chunk).argmax(dim=-1) for chunk in images.split(256)])
    inspection = Inspection(
        net=net,
        images=images,
        targets=labels if target == "true" else predicted,
        normalizer=model.normalizer,
        labels=labels,
        class_names=model.class_names,
        layer=layer,
        unit=unit,
        **settings,
    )
    with warnings.catch_warnings():  # Captum's notes on setting requires_grad and hooking ReLUs, on every call
        warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")
        figure = METHODS[method](inspection)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    folder = Path(str(cfg.out)) if cfg.get("out") is not None else ckpt_path.parent
    path = write_new(folder, f"{ckpt_path.stem}_{method}" + (f"_{layer}" if layer else ""), buffer.getvalue())
    console.print(f"{method}: {len(images)} image{'s' if len(images) != 1 else ''}, written to {path}")
    logs = tensorboard_dir(ckpt_path)
    if logs is None:
        console.print(f"tensorboard: {ckpt_path}'s run kept no TensorBoard logs (no <run>/tensorboard folder)")
        return path
    with SummaryWriter(log_dir=str(logs)) as writer:  # a new event file; the run's own are left as they are
        writer.add_image(f"visualize/{path.stem}", np.asarray(Image.open(buffer).convert("RGB")), dataformats="HWC")
    console.print(f"tensorboard: visualize/{path.stem} in a new event file of {logs} (tensorboard --logdir {logs})")
    return path
