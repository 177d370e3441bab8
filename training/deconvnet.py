"""Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks" (ECCV): the deconvnet.

Section 2.1 projects one feature activation back to pixel space by running the layers below it backwards: each
max pool is undone by *unpooling* with the *switches* (the position of each pooling region's maximum, recorded
in the forward pass), each ReLU by *rectifying* the reconstructed signal, each convolution by *filtering* with the
same filters transposed (``F.conv_transpose2d``; biases are not used). Figure 2 shows, for the strongest 9
activations of a feature map over a data set, the input patch of each one's receptive field beside its projection.

``deconvnet`` walks the leaf modules that the forward pass runs up to ``layer`` (recorded with forward hooks: the
pool switches, the input and output sizes; the model itself is not changed), and inverts them in reverse:

    Conv2d                 the transposed filters (Section 2.1's filtering)
    Linear                 the transposed weight matrix (the same rule for a fully-connected layer)
    MaxPool2d, AdaptiveMaxPool2d
                           unpooling with the switches; where overlapping windows (ZFNet's and AlexNet's 3x3
                           pools of stride 2) share a maximum, their signals add up
    AvgPool2d, AdaptiveAvgPool2d
                           the transpose of the fixed averaging filter (each window's value spread evenly over it)
    activations            rectified as the paper's ReLU: ReLU and its variants (leaky, PReLU, RReLU, ELU, SELU,
                           ReLU6, softplus, maxout per channel) and also tanh, sigmoid and LeNet-5's scaled tanh
    normalisations         passed through unchanged: Figure 1's deconvnet has no step for ZFNet's contrast
                           normalisation (local response normalisation here), and batch, group and layer norm are
                           treated the same way
    dropout, identity, flatten and reshapes
                           passed through (the model runs in eval mode, where dropout is the identity)

So it works for ZFNet, AlexNet (both forms), VGG (with or without batch norm), LeNet-5 (``lenet5``, in any of its
activations and pools) and Network in Network, and any network built in one chain of such layers. A network that
combines tensors outside its layers (ResNet's and ResNeXt's residual additions, DenseNet's, GoogLeNet's and
SqueezeNet's concatenations) or has a layer of another kind below ``layer`` (``lenet5_paper``'s trainable
subsampling) is refused by ``deconvnet`` with ``NotAChain`` naming those blocks and layers. Operations in a
``forward`` that change a tensor in place without a module are not seen.

``top_patches`` works for every network. On a chain, the receptive field is the layer-by-layer arithmetic of kernels,
strides and paddings and the projection ``deconvnet``'s. Below branches, the field is ``surrogate_receptive_field``'s:
the support of the gradient of one unit in a *structural surrogate* of the network (positive averaging weights, no
biases, max pools as average pools, activations as the identity, float64, a constant image), where no path can
cancel, so the pixels it reaches are exactly those the layers connect to the unit (the longer path of a residual
sum, the union of a concatenation's branches); and the projection is ``project_through_branches``': Captum's
``NeuronDeconvolution`` (the deconvnet's rule as a backward pass, which follows every branch) from the same unit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from captum.attr import NeuronDeconvolution
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

from models import ChannelMaxout, ScaledTanh, did_you_mean

RECTIFIED = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Softplus, nn.Hardswish, nn.Hardtanh, nn.Tanh, nn.Sigmoid, ScaledTanh, ChannelMaxout,
)  # fmt: skip
PASSED = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Identity, nn.Flatten,
    nn.Unflatten,
)  # fmt: skip
WINDOWED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
ADAPTIVE = (nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)
INVERTED = (*RECTIFIED, *PASSED, *WINDOWED, *ADAPTIVE, nn.Linear)
INVERTED_KINDS = "conv, linear, max and average pooling, activations, normalisation, dropout and reshapes"
# the layers the structural surrogate sees through as the identity: elementwise activations (the identity on its
# positive signals: ReLU's derivative there, without tanh's saturation or ReLU6's cap), and normalisations by an
# example's own statistics (which would make each unit depend on every pixel, where the chain arithmetic passes them)
SEEN_THROUGH = (*RECTIFIED, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
ENLARGEMENTS = (1, 2, 4, 8, 16, 32, 64)  # the surrogate's input along one axis, in multiples of the given size


class NotAChain(ValueError):
    """The network below the layer is not one chain of layers the deconvnet inverts (a residual addition, a
    concatenation, a layer of another kind): named in one line."""


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` in ``model.named_modules()`` (``"features.3"``); a ``ValueError`` in one line
    naming the close matches and the accepted names otherwise."""
    layers = {path: module for path, module in model.named_modules() if path}
    if name in layers:
        return layers[name]
    hint = did_you_mean(name, list(layers))
    raise ValueError(f"{type(model).__name__} has no layer {name!r}; {hint}accepted: {', '.join(layers)}")


@dataclass(frozen=True)
class ReceptiveField:
    """The input pixels one unit of a layer sees, per axis (rows, columns): unit ``i`` covers pixels ``start + i *
    stride`` up to ``start + i * stride + size - 1`` (``start`` is negative where the layers below pad). A unit
    that sees the whole image (after a flatten or a linear layer) has stride 0."""

    size: tuple[int, int]
    stride: tuple[int, int]
    start: tuple[int, int]

    def corner(self, row: int, col: int) -> tuple[int, int]:
        """The input pixel at the top left of the field of the unit at (``row``, ``col``) of the layer's map."""
        return self.start[0] + row * self.stride[0], self.start[1] + col * self.stride[1]


@dataclass
class TopPatches:
    """Figure 2 for one layer: its first ``units`` feature maps' strongest activations over a data set."""

    activations: Tensor  # (units, k) the k strongest activations of each of the first `units` channels
    patches: Tensor  # (units, k, C, h, w) the input patches of their receptive fields (clipped, zero-padded)
    projections: Tensor  # (units, k, C, h, w) the deconvnet projections cropped to the same patches
    # False: one chain (the layer-by-layer field and projection); True: a network with branches (the structural
    # surrogate's field, Captum's projection through every branch)
    through_branches: bool = False


@dataclass
class _Step:
    """One leaf module the forward pass ran below the layer, as the hooks saw it."""

    name: str
    module: nn.Module
    input_shape: torch.Size
    output_shape: torch.Size
    switches: Tensor | None  # a max pool's positions of the maxima, flat in each input map


class _Reached(Exception):
    """Raised by the hook of the chosen layer: the rest of the forward pass is not needed."""


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _same_data(before: Tensor, after: Tensor) -> bool:
    """``after`` is ``before`` or a reshaped view of all of it (``torch.flatten``, ``x.view``)."""
    if after is before:
        return True
    return (
        isinstance(after, Tensor)
        and after.data_ptr() == before.data_ptr()
        and after.numel() == before.numel()
        and after.is_contiguous()
        and before.is_contiguous()
    )


def _block(first: str, second: str) -> str:
    """The innermost module holding both layers: where the tensors between them were combined."""
    common = []
    for a, b in zip(first.split("."), second.split("."), strict=False):
        if a != b:
            break
        common.append(a)
    return ".".join(common)


def _invertible(module: nn.Module) -> bool:
    if isinstance(module, nn.Conv2d):  # padding given as a number on each side, with zeros
        return not isinstance(module.padding, str) and module.padding_mode == "zeros"
    return isinstance(module, INVERTED)


def _switches(module: nn.Module, x: Tensor) -> Tensor | None:
    """Section 2.1's switches: where each pooling region's maximum came from (flat in each of ``x``'s maps)."""
    if isinstance(module, nn.MaxPool2d):
        k, s, p, d = module.kernel_size, module.stride, module.padding, module.dilation
        return F.max_pool2d(x, k, s, p, d, ceil_mode=module.ceil_mode, return_indices=True)[1]
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return F.adaptive_max_pool2d(x, module.output_size, return_indices=True)[1]
    return None


@contextlib.contextmanager
def _inspecting(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode with its activations out of place (Captum's backward hooks and the surrogate's
    replaced outputs need them so), both restored afterwards."""
    modes = {module: module.training for module in model.modules()}
    in_place = [module for module in model.modules() if getattr(module, "inplace", False)]
    try:
        model.eval()
        for module in in_place:
            module.inplace = False
        yield
    finally:
        for module, mode in modes.items():
            module.training = mode
        for module in in_place:
            module.inplace = True


def _run_to(model: nn.Module, images: Tensor, layer: str, tensors: dict[str, Tensor] | None = None) -> Tensor:
    """The output of ``layer`` when ``model`` (with ``tensors`` in place of its own parameters and buffers, where
    given) runs on ``images``; the rest of the forward pass is not run."""
    reached: list[Tensor] = []

    def on_target(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        reached.append(output)
        raise _Reached

    handle = find_layer(model, layer).register_forward_hook(on_target)
    try:
        with contextlib.suppress(_Reached):
            functional_call(model, tensors, (images,)) if tensors is not None else model(images)
    finally:
        handle.remove()
    if not reached:
        raise ValueError(f"layer {layer!r} is not used in {type(model).__name__}'s forward pass")
    return reached[0]


def _layer_output(model: nn.Module, images: Tensor, layer: str) -> Tensor:
    """The output of ``layer`` on ``images`` in eval mode, without gradients."""
    with _inspecting(model), torch.no_grad():
        return _run_to(model, images, layer)


def _record(model: nn.Module, images: Tensor, layer: str, switches: bool = True) -> tuple[list[_Step], Tensor]:
    """Run ``model`` on ``images`` (no gradients, eval mode, restored after) up to the output of ``layer``: the
    leaf modules below it in the order they ran, and that output. ``NotAChain`` in one line where they do not
    form one chain of layers the deconvnet inverts."""
    find_layer(model, layer)
    names = {module: name for name, module in model.named_modules()}
    steps: list[_Step] = []
    combining: list[str] = []  # blocks that combine tensors outside their layers
    foreign: list[str] = []  # layers of a kind it does not invert
    last: list[Tensor] = [images]  # the output of the last step, which the next one must take

    def combined(block: str) -> None:
        combining.append(f"{block} ({type(model.get_submodule(block)).__name__})" if block else type(model).__name__)

    def on_leaf(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        name = names[module]
        if not _same_data(last[0], inputs[0]):  # a branch: it was combined in the block holding both layers
            combined(_block(steps[-1].name if steps else "", name))
        tensors = len(inputs) == 1 and isinstance(inputs[0], Tensor) and isinstance(output, Tensor)
        if not (_invertible(module) and tensors):
            foreign.append(f"{name} ({type(module).__name__})")
            if not tensors:  # several inputs or outputs (a join of columns, a hidden state): no step to invert
                return
        recorded = _switches(module, inputs[0]) if switches else None
        steps.append(_Step(name, module, inputs[0].shape, output.shape, recorded))
        last[0] = output

    def on_block(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if not _same_data(last[0], output):  # it combined its layers' outputs (a concatenation, an addition)
            combined(names[module])
            last[0] = output

    handles = [
        module.register_forward_hook(on_block if list(module.children()) else on_leaf)
        for module in model.modules()
        if module is not model
    ]
    try:
        output = _layer_output(model, images, layer)
    finally:
        for handle in handles:
            handle.remove()
    if combining or foreign:
        listed = [f"blocks that add or concatenate tensors: {', '.join(dict.fromkeys(combining))}"] if combining else []
        listed += [f"layers of other kinds: {', '.join(foreign)}"] if foreign else []
        raise NotAChain(
            f"the deconvnet cannot invert {type(model).__name__} below {layer!r}, which has {'; '.join(listed)} "
            f"(it inverts {INVERTED_KINDS} in one chain)"
        )
    return steps, output


def _chain(model: nn.Module, images: Tensor, layer: str) -> list[_Step] | None:
    """``_record``'s steps below ``layer`` (without switches), or None where they are not one chain."""
    try:
        return _record(model, images, layer, switches=False)[0]
    except NotAChain:
        return None


def _transpose(step: _Step, signal: Tensor) -> Tensor:
    """Section 2.1's reverse of one step: from a signal of its output's shape to one of its input's."""
    module, shape = step.module, step.input_shape
    signal = signal.reshape(step.output_shape)
    if isinstance(module, nn.Conv2d):
        stride, padding, dilation = _pair(module.stride), _pair(module.padding), _pair(module.dilation)
        kernel, (height, width) = module.kernel_size, step.output_shape[2:]
        # the rows (columns) a strided conv left unused at the end of its input, given back as output padding
        unused = tuple(
            size - ((outputs - 1) * stride[axis] - 2 * padding[axis] + dilation[axis] * (kernel[axis] - 1) + 1)
            for axis, (size, outputs) in enumerate(zip(shape[2:], (height, width), strict=True))
        )
        return F.conv_transpose2d(signal, module.weight, None, stride, padding, unused, module.groups, dilation)
    if isinstance(module, nn.Linear):
        return signal @ module.weight
    if step.switches is not None:  # unpooling: each value back where its maximum came from
        maps = signal.new_zeros(*shape[:2], shape[2] * shape[3])
        return maps.scatter_add_(2, step.switches.flatten(2), signal.flatten(2)).view(shape)
    if isinstance(module, nn.AvgPool2d | nn.AdaptiveAvgPool2d):
        with torch.enable_grad():  # the transpose of a linear map is its gradient
            x = signal.new_zeros(shape, requires_grad=True)
            return torch.autograd.grad(module(x), x, signal)[0]
    if isinstance(module, RECTIFIED):
        return F.relu(signal)
    return signal.reshape(shape)


def _project(steps: list[_Step], output: Tensor, channels: Tensor, positions: Tensor) -> Tensor:
    """For each image ``n`` of a recorded pass, the activation of channel ``channels[n]`` at flat position
    ``positions[n]`` of the layer's ``output``, alone, projected back to pixel space (N, C, H, W)."""
    maps = _channel_maps(output)
    rows = torch.arange(len(maps), device=maps.device)
    signal = torch.zeros_like(maps)
    signal[rows, channels, positions] = maps[rows, channels, positions]
    with torch.no_grad():
        for step in reversed(steps):
            signal = _transpose(step, signal)
    return signal.reshape(steps[0].input_shape)


def _channel_maps(output: Tensor) -> Tensor:
    """A layer's output as (N, channels, positions): a vector's features are channels of one position."""
    return output.reshape(output.shape[0], output.shape[1], -1)


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"the deconvnet takes a batch of images (N, C, H, W), got {shape}")


def deconvnet(model: nn.Module, images: Tensor, layer: str, unit: int | None = None) -> Tensor:
    """Zeiler & Fergus 2014 Sec. 2.1: for each image (N, C, H, W), the strongest activation of channel ``unit`` of
    ``layer`` (of the strongest channel if None), alone, projected back to pixel space through the layers below
    (max-unpooling with the forward pass's switches, ReLU, transposed convolution with the same filters).
    Returns (N, C, H, W). ValueError (one line) for a network with layers it cannot invert, naming them."""
    _check_images(images)
    steps, output = _record(model, images, layer)
    return _project(steps, output, *_strongest(output, layer, unit))


def deconvnet_anywhere(model: nn.Module, images: Tensor, layer: str, unit: int | None = None) -> tuple[Tensor, bool]:
    """``deconvnet``'s projection where the layers below ``layer`` form one chain; otherwise the same strongest
    activation projected through every branch (``project_through_branches``). Returns the projection (N, C, H, W)
    and whether it went through branches."""
    try:
        return deconvnet(model, images, layer, unit), False
    except NotAChain:
        output = _layer_output(model, images, layer)
        return project_through_branches(model, images, layer, *_strongest(output, layer, unit)), True


def _strongest(output: Tensor, layer: str, unit: int | None) -> tuple[Tensor, Tensor]:
    """Per image of ``layer``'s ``output``, the channel ``unit`` (the strongest channel if None) and the flat
    position of its strongest activation."""
    maps = _channel_maps(output)
    if unit is not None and (isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit < maps.shape[1]):
        raise ValueError(f"unit must be a channel of {layer!r}, 0 to {maps.shape[1] - 1}, got {unit!r}")
    strongest = maps.amax(dim=2).argmax(dim=1)  # the strongest channel of each image
    channels = strongest if unit is None else torch.full_like(strongest, unit)
    return channels, maps[torch.arange(len(maps), device=maps.device), channels].argmax(dim=1)


def _input_channels(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise ValueError(f"{type(model).__name__} has no convolution: its units have no receptive field in an image")


def _field(steps: list[_Step], input_size: tuple[int, int]) -> ReceptiveField:
    """The receptive field of the last step's units, layer by layer: a window of ``kernel`` units spaced
    ``dilation`` apart, moved by ``stride`` over an input padded by ``padding``, widens the field by ``(dilation *
    (kernel - 1)) * jump`` and moves its start by ``-padding * jump``; the jump (the stride in pixels) multiplies."""
    size, jump, start = [1, 1], [1, 1], [0, 0]
    uneven = None  # an adaptive pool of unequal windows: no single field, unless a layer above sees everything
    for step in steps:
        module = step.module
        if len(step.input_shape) != 4 or len(step.output_shape) != 4 or isinstance(module, nn.Linear):
            return ReceptiveField(input_size, (0, 0), (0, 0))  # a vector: each of its units sees the whole image
        if isinstance(module, WINDOWED):
            kernel, stride, padding = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
            dilation = _pair(getattr(module, "dilation", 1))  # average pools have none
        elif isinstance(module, ADAPTIVE):
            inputs, outputs = step.input_shape[2:], step.output_shape[2:]
            if any(i % o for i, o in zip(inputs, outputs, strict=True)):
                uneven = f"{step.name} ({type(module).__name__}) pools {tuple(inputs)} maps into {tuple(outputs)}"
            kernel = stride = (inputs[0] // outputs[0], inputs[1] // outputs[1])
            padding, dilation = (0, 0), (1, 1)
        else:  # pointwise: activations, normalisations, dropout
            continue
        for axis in (0, 1):
            size[axis] += dilation[axis] * (kernel[axis] - 1) * jump[axis]
            start[axis] -= padding[axis] * jump[axis]
            jump[axis] *= stride[axis]
    if uneven:
        raise ValueError(f"{uneven} with windows of unequal sizes: its units have no single receptive field")
    return ReceptiveField((size[0], size[1]), (jump[0], jump[1]), (start[0], start[1]))


def receptive_field(model: nn.Module, layer: str, input_size: tuple[int, int]) -> ReceptiveField:
    """size, stride (jump) and start offset per axis of one unit of ``layer`` for images of ``input_size``: from the
    kernels, strides, paddings and dilations of the layers below where they form one chain (``_field``), from the
    structural surrogate's gradients where they add or concatenate tensors (``surrogate_receptive_field``)."""
    parameter = next(model.parameters())
    x = torch.zeros(1, _input_channels(model), *input_size, dtype=parameter.dtype, device=parameter.device)
    return _field_and_steps(model, x, layer)[0]


def _field_and_steps(model: nn.Module, image: Tensor, layer: str) -> tuple[ReceptiveField, list[_Step] | None]:
    """The receptive field of ``layer``'s units for images of ``image``'s size, and the chain of steps below it
    (None where the layers below are not one chain)."""
    steps, size = _chain(model, image, layer), (image.shape[-2], image.shape[-1])
    return (_field(steps, size) if steps is not None else surrogate_receptive_field(model, layer, size)), steps


def _surrogate_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The structural surrogate's parameters and buffers (float64, by name): every weight of 2+ dims 1 / fan-in (a
    weighted average), every bias 0 and other 1-D parameters 1 (batch norm's and residual scales: none can cancel a
    path), batch norm's running mean 0 and variance 1. The weights of linear layers (the largest) are expanded
    views of one number: no memory."""
    tensors = {}
    for name, parameter in model.named_parameters():
        bias = parameter.dim() == 1 and name.rpartition(".")[2] == "bias"
        value = 1.0 / parameter[0].numel() if parameter.dim() > 1 else float(not bias)
        constant = torch.tensor(value, dtype=torch.float64, device=parameter.device).expand(parameter.shape)
        tensors[name] = constant.contiguous() if parameter.dim() > 2 else constant  # convolutions are slow on views
    for name, buffer in model.named_buffers():
        kind = name.rpartition(".")[2]
        if kind in ("running_mean", "running_var"):
            tensors[name] = torch.full_like(buffer, float(kind == "running_var"), dtype=torch.float64)
        elif buffer.is_floating_point():
            tensors[name] = buffer.double()
    return tensors


def _surrogate_output(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
    """The forward hook that makes ``module`` the surrogate's: a max pool the average pool of the same windows (its
    gradient reaches every pixel of the window, not only the maximum's); the layers of ``SEEN_THROUGH`` the
    identity."""
    if isinstance(module, nn.MaxPool2d):
        if _pair(module.dilation) != (1, 1):
            raise ValueError(f"the receptive field of a dilated max pool ({module}) is not computed")
        return F.avg_pool2d(inputs[0], module.kernel_size, module.stride, module.padding, module.ceil_mode)
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return F.adaptive_avg_pool2d(inputs[0], module.output_size)
    return inputs[0]


def surrogate_receptive_field(model: nn.Module, layer: str, input_size: tuple[int, int]) -> ReceptiveField:
    """The receptive field of one unit of ``layer`` for any network (branches that add or concatenate included),
    from the support of the gradient of its *structural surrogate*: ``model`` with the weights of
    ``_surrogate_tensors`` (positive averages, no biases), max pools made average pools, activations and
    per-example normalisations made the identity, in float64 on a constant positive image. Every signal is then
    positive and every derivative >= 0, so no path cancels: the pixels with a non-zero gradient of a unit (summed
    over the layer's channels: a concatenation's field is the union of its branches') are exactly those a path of
    layers connects to it. Per axis, the first and last such pixel of a unit near the map's centre give ``size``,
    the shift to its neighbour's gives ``stride``, and ``start`` follows; where the field reaches the image's border
    the image is enlarged along that axis (2x, 4x, ... 64x) until it does not, so a field larger than the image
    comes out as the chain arithmetic gives it (larger than the image, a negative start). A unit of a vector, or of
    a map pooled to one position whatever the image's size, sees the whole image (stride 0)."""
    channels = _input_channels(model)
    tensors = _surrogate_tensors(model)
    device = next(iter(tensors.values())).device
    cache: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
    # the other axis as narrow as the network takes (a zoo model's min_input_size): the cost is the image's area
    across = tuple(min(length, getattr(model, "min_input_size", length)) for length in input_size)
    handles = [
        module.register_forward_hook(_surrogate_output)
        for module in model.modules()
        if isinstance(module, (nn.MaxPool2d, nn.AdaptiveMaxPool2d, *SEEN_THROUGH))
    ]

    def run(shape: tuple[int, int]) -> tuple[Tensor, Tensor]:  # the constant image of that shape and the layer's output
        if shape not in cache:
            image = torch.full((1, channels, *shape), 0.5, dtype=torch.float64, device=device, requires_grad=True)
            cache[shape] = image, _run_to(model, image, layer, tensors)
        return cache[shape]

    try:
        with _inspecting(model), torch.enable_grad():
            per_axis = [_axis_field(run, input_size, across, axis, layer) for axis in (0, 1)]
    finally:
        for handle in handles:
            handle.remove()
    if None in per_axis:
        return ReceptiveField(input_size, (0, 0), (0, 0))
    (size, stride, start) = zip(*per_axis, strict=True)
    return ReceptiveField(size, stride, start)


def _reach(image: Tensor, output: Tensor, unit: tuple[int, int], axis: int) -> tuple[int, int]:
    """The first and last pixel along ``axis`` (0 rows, 1 columns) with a non-zero gradient of the layer's unit at
    ``unit`` (row, column), summed over its channels."""
    (gradient,) = torch.autograd.grad(output[0, :, unit[0], unit[1]].sum(), image, retain_graph=True)
    reached = gradient[0].ne(0).any(dim=0).any(dim=1 - axis).nonzero()[:, 0]
    return int(reached[0]), int(reached[-1])


def _axis_field(
    run: Callable[[tuple[int, int]], tuple[Tensor, Tensor]],
    input_size: tuple[int, int],
    across: tuple[int, int],
    axis: int,
    layer: str,
) -> tuple[int, int, int] | None:
    """``surrogate_receptive_field`` along one axis: (size, stride, start), or None for a unit that sees the
    whole image (a vector, or a map pooled to one position). The other axis is ``across`` long: a field's extent
    along one axis does not depend on the image's along the other, where every path still reaches the unit."""
    lengths: list[int] = []
    for factor in ENLARGEMENTS:
        shape = (input_size[0] * factor, across[1]) if axis == 0 else (across[0], input_size[1] * factor)
        image, output = run(shape)
        if output.dim() != 4:
            return None
        length = output.shape[2 + axis]
        if lengths and length == lengths[-1]:  # the map keeps its size whatever the image's: pooled adaptively
            if length == 1:
                return None
            raise ValueError(
                f"the maps of {layer!r} keep {length} positions whatever the image's size (an adaptive pool): "
                "its units have no single receptive field"
            )
        lengths.append(length)
        centre = ((output.shape[2] - 1) // 2, (output.shape[3] - 1) // 2)
        first, last = _reach(image, output, centre, axis)
        if length > 1 and first > 0 and last < shape[axis] - 1:
            neighbour = (centre[0] + 1, centre[1]) if axis == 0 else (centre[0], centre[1] + 1)
            stride = _reach(image, output, neighbour, axis)[0] - first
            return last - first + 1, stride, first - centre[axis] * stride
    raise ValueError(
        f"the receptive field of {layer!r} reaches beyond {ENLARGEMENTS[-1]} times the image's "
        f"{'rows' if axis == 0 else 'columns'} ({input_size[axis]}): give larger images"
    )


def project_through_branches(
    model: nn.Module, images: Tensor, layer: str, channels: Tensor, positions: Tensor
) -> Tensor:
    """For each image ``n`` (N, C, H, W), the activation of channel ``channels[n]`` at flat position
    ``positions[n]`` of ``layer``, projected back to pixel space through every branch below it: Captum's
    ``NeuronDeconvolution`` (the backward pass with each ReLU's gradient rectified instead of masked; Springenberg
    et al. 2015 show it is the deconvnet on a chain) from that unit, scaled by its activation (the backward pass
    starts from 1, the deconvnet from the activation itself). Returns (N, C, H, W)."""
    rows = torch.arange(len(images), device=images.device)

    def chosen(output: Tensor) -> Tensor:
        return _channel_maps(output)[rows, channels, positions]

    activations = chosen(_layer_output(model, images, layer))
    with _inspecting(model):
        projection = NeuronDeconvolution(model, find_layer(model, layer)).attribute(images, neuron_selector=chosen)
    return projection.detach() * activations.reshape(-1, *(1,) * (images.dim() - 1))


def _crop(image: Tensor, corner: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """The ``size`` window of ``image`` (C, H, W) whose top left is ``corner``, zero where it leaves the image."""
    patch = image.new_zeros(image.shape[0], *size)
    (top, left), (height, width) = corner, image.shape[1:]
    rows = slice(max(top, 0), min(top + size[0], height))
    cols = slice(max(left, 0), min(left + size[1], width))
    if rows.start < rows.stop and cols.start < cols.stop:
        patch[:, rows.start - top : rows.stop - top, cols.start - left : cols.stop - left] = image[:, rows, cols]
    return patch


def top_patches(model: nn.Module, batches: Iterable[Tensor], layer: str, units: int = 16, k: int = 9) -> TopPatches:
    """Figure 2's procedure over a data set (an iterable of image batches, or of ``(images, labels)`` pairs):
    for each of the first ``units`` channels of ``layer`` (all of them where it has fewer), the ``k`` strongest
    activations over the data set, at most one per image (its strongest position: the figure's 9 patches come from
    9 images), the input patches of their receptive fields and their deconvnet projections cropped alike.
    ``k`` is the number of images where the data set has fewer. Below a layer that is not one chain, the field is
    ``surrogate_receptive_field``'s and the projection ``project_through_branches``'s (``through_branches``)."""
    if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        raise ValueError(f"units must be a positive number of channels, got {units!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive number of activations, got {k!r}")
    device = next(model.parameters()).device
    values = images = positions = None  # the best so far: (units, k'), (units, k', C, H, W), (units, k')
    for batch in batches:
        batch = batch[0] if isinstance(batch, tuple | list) else batch
        _check_images(batch)
        batch = batch.to(device)
        output = _layer_output(model, batch, layer)
        maps = _channel_maps(output)[:, :units]  # (N, units, positions)
        strongest, where = maps.amax(dim=2).T, maps.argmax(dim=2).T  # (units, N): one per image
        kept = 0 if values is None else values.shape[1]
        if values is not None:
            strongest, where = torch.cat([values, strongest], dim=1), torch.cat([positions, where], dim=1)
        values, best = strongest.topk(min(k, strongest.shape[1]), dim=1)
        positions = where.gather(1, best)
        images = torch.stack(
            [
                torch.stack([images[u, i] if i < kept else batch[i - kept] for i in row])
                for u, row in enumerate(best.tolist())
            ]
        )
    if values is None:
        raise ValueError("top_patches needs at least one batch of images")
    field, steps = _field_and_steps(model, images[0, :1], layer)
    width = output.shape[-1] if output.dim() == 4 else 1
    patches, projections = [], []
    for unit, (chosen, where) in enumerate(zip(images, positions, strict=True)):
        channels = torch.full_like(where, unit)
        if steps is not None:
            projected = _project(*_record(model, chosen, layer), channels, where)
        else:
            projected = project_through_branches(model, chosen, layer, channels, where)
        corners = [field.corner(*divmod(int(position), width)) for position in where]
        patches.append(torch.stack([_crop(x, c, field.size) for x, c in zip(chosen, corners, strict=True)]))
        projections.append(torch.stack([_crop(x, c, field.size) for x, c in zip(projected, corners, strict=True)]))
    return TopPatches(values, torch.stack(patches), torch.stack(projections), through_branches=steps is None)
