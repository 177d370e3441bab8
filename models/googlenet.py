"""GoogLeNet (Inception v1).

C. Szegedy, W. Liu, Y. Jia, P. Sermanet, S. Reed, D. Anguelov, D. Erhan, V. Vanhoucke, A. Rabinovich,
"Going Deeper with Convolutions", CVPR 2015. ``googlenet`` follows Table 1 and Figure 3 as published:

    input 3x224x224
    conv 7x7/2 (64)                  -> 64x112x112
    max pool 3x3/2, LocalRespNorm    -> 64x56x56
    conv 1x1 (64), conv 3x3 (192)    -> 192x56x56
    LocalRespNorm, max pool 3x3/2    -> 192x28x28
    inception 3a, 3b                 -> 480x28x28
    max pool 3x3/2                   -> 480x14x14
    inception 4a, 4b, 4c, 4d, 4e     -> 832x14x14   (auxiliary classifiers on 4a and 4d, Section 5)
    max pool 3x3/2                   -> 832x7x7
    inception 5a, 5b                 -> 1024x7x7
    avg pool 7x7/1, dropout 40%, linear, softmax

Each inception module (Figure 2b) concatenates a 1x1 conv, a 1x1 reduce + 3x3 conv, a 1x1 reduce + 5x5 conv and
a 3x3/1 max pool + 1x1 projection; every convolution is followed by a ReLU and there is no batch norm. Each auxiliary
classifier is a 5x5/3 average pool (4x4x512 on 4a, 4x4x528 on 4d), a 1x1 conv with 128 filters + ReLU, an FC layer of
1024 + ReLU, 70% dropout and a linear classifier; they are used in training only. Two pools are generalised so that
other input sizes run, both unchanged at 224x224: the final 7x7/1 average pool is a global average, and the aux
heads' 5x5/3 average pool is followed by an adaptive average pool to the 4x4 their FC layer takes (the identity on a
4x4 map). ``init="paper"`` draws Xavier (Glorot) uniform weights with zero biases; the paper does not state its
initialisation.

For 1000 classes ``googlenet`` has 13,378,280 parameters, 6,998,552 without the auxiliary heads (each head has about
3.19M). Table 1's "params" column counts weights without biases, in units of 1024: its rows sum to 6,797.7K, ours to
6,826.4K (6,990,272 weights). Our rows follow from Table 1's channel numbers; the paper's own figures agree for conv2
(112K), 3a (159K), 3b (380K against our 379K), 4b (437K / 438K) and the linear layer (1000K), and not for conv1
(2.7K against 9.2K for 7x7x3x64), 4a (364K / 366.8K), 4c (463K / 497.5K), 4d (580K / 590.5K), 4e (840K / 847K),
5a (1072K / 1018K) and 5b (1388K / 1409K).

``googlenet_tv`` is torchvision's GoogLeNet (``torchvision.models.googlenet``), whose layer sizes and weights can
be exchanged with it: batch norm after every convolution and no LocalRespNorm, a 3x3 conv where the paper's 5x5
branch has a 5x5 (https://github.com/pytorch/vision/issues/906), a 2x2 max pool before 5a, auxiliary classifiers
with an adaptive 4x4 average pool, and 20% dropout. It has 6,624,904 parameters, 13,004,888 with the auxiliary heads.

``activation`` replaces every ReLU, the aux heads' included. ``norm`` keeps Figure 3's two LocalRespNorm layers
(``local_response``), or puts batch norm after every convolution instead, the convolution then without bias as in
torchvision's (``batch``), or has neither (``none``); ``googlenet_tv`` has batch norm only.

In training mode with ``aux_logits=True``, ``forward`` returns ``(logits, aux1_logits, aux2_logits)`` (aux1 on 4a,
aux2 on 4d; the paper adds their losses with weight 0.3); otherwise it returns the logits alone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from models._activations import make_activation
from models._base import ClassifierNet, check_flag
from models._norms import make_norm
from models._registry import register_model

ConvBlock = Callable[..., nn.Module]


def basic_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    *,
    activation: str = "relu",
    norm: str = "none",
    bn_eps: float = 1e-5,
) -> nn.Module:
    """A convolution and its activation, as in the paper ("All the convolutions ... use rectified linear").

    With a ``norm`` (a kind of ``make_norm``) it comes between them, named ``bn``, and the conv has no bias:
    torchvision's BasicConv2d for ``norm="batch"`` (which uses eps 0.001).
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["conv"] = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=norm == "none")
    if norm != "none":
        layers["bn"] = make_norm(norm, out_channels, eps=bn_eps)
    layers["act"] = make_activation(activation, out_channels, inplace=True)
    return nn.Sequential(layers)


# transform_input: from the ImageNet mean/std standardisation to the (x - 0.5) / 0.5 one of the ported weights
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNetToHalfScale(nn.Module):
    """torchvision's ``transform_input`` for the weights Google released (GoogLeNet, Inception-v3): images
    standardised with ImageNet's mean and std become ``(x - 0.5) / 0.5`` of the same pixels, in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        scale = torch.tensor([std / 0.5 for std in IMAGENET_STD]).view(1, 3, 1, 1)
        shift = torch.tensor([(mean - 0.5) / 0.5 for mean in IMAGENET_MEAN]).view(1, 3, 1, 1)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def input_transform(transform_input: bool, in_channels: int) -> ImageNetToHalfScale | None:
    """The layer of the ``transform_input`` option (None when off); ``ValueError`` for a non-bool or non-RGB input."""
    check_flag("transform_input", transform_input)
    if transform_input and in_channels != 3:
        raise ValueError(f"transform_input re-standardises RGB images and needs in_channels=3, got {in_channels}")
    return ImageNetToHalfScale() if transform_input else None


class Inception(nn.Module):
    """Inception module with dimension reductions (Figure 2b); the arguments are Table 1's columns.

    ``kernel_5x5`` is the kernel of the "#5x5" branch: 5 in the paper, 3 in torchvision's model.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3_reduce: int,
        ch3x3: int,
        ch5x5_reduce: int,
        ch5x5: int,
        pool_proj: int,
        conv_block: ConvBlock = basic_conv,
        kernel_5x5: int = 5,
    ) -> None:
        super().__init__()
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.conv1x1 = conv_block(in_channels, ch1x1, kernel_size=1)  # "#1x1"
        self.reduce3x3 = conv_block(in_channels, ch3x3_reduce, kernel_size=1)  # "#3x3 reduce"
        self.conv3x3 = conv_block(ch3x3_reduce, ch3x3, kernel_size=3, padding=1)  # "#3x3"
        self.reduce5x5 = conv_block(in_channels, ch5x5_reduce, kernel_size=1)  # "#5x5 reduce"
        self.conv5x5 = conv_block(ch5x5_reduce, ch5x5, kernel_size=kernel_5x5, padding=kernel_5x5 // 2)  # "#5x5"
        self.pool = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)  # 3x3 max pooling
        self.pool_proj = conv_block(in_channels, pool_proj, kernel_size=1)  # "pool proj"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [
            self.conv1x1(x),
            self.conv3x3(self.reduce3x3(x)),
            self.conv5x5(self.reduce5x5(x)),
            self.pool_proj(self.pool(x)),
        ]
        return torch.cat(branches, dim=1)  # "Filter concatenation"


class AuxClassifier(nn.Module):
    """Auxiliary classifier of Section 5, on the output of inception 4a or 4d; ``pool`` brings that to 4x4."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        pool: nn.Module,
        conv_block: ConvBlock,
        dropout: float,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.pool = pool  # 4x4x512 for 4a, 4x4x528 for 4d
        self.conv = conv_block(in_channels, 128, kernel_size=1)  # 1x1 conv with 128 filters + ReLU
        self.fc = nn.Linear(128 * 4 * 4, 1024)  # fully connected layer with 1024 units ...
        self.act = make_activation(activation, 1024, inplace=True)  # ... and rectified linear activation
        self.dropout = nn.Dropout(p=dropout)  # 70% ratio of dropped outputs
        self.classifier = nn.Linear(1024, num_classes)  # linear layer with softmax loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.classifier(self.dropout(self.act(self.fc(x))))


def paper_aux_pool() -> nn.Module:
    """Section 5's 5x5/3 average pool, 14x14 -> 4x4; the adaptive pool after it is the identity on that 4x4 and
    resizes other maps to the 4x4 the FC layer takes (as torchvision's VGG does for its 7x7), so other input sizes
    run: the network then needs 4a's map to be at least 5x5."""
    return nn.Sequential(nn.AvgPool2d(kernel_size=5, stride=3), nn.AdaptiveAvgPool2d(4))


class GoogLeNet(ClassifierNet):
    """GoogLeNet of Table 1 and Figure 3, with the two auxiliary classifiers of Section 5 when ``aux_logits``.

    ``norm`` is Figure 3's two LocalRespNorm layers (``local_response``), batch norm after every convolution
    instead (``batch``), or neither (``none``). The class attributes below hold Table 1's layers where torchvision's
    model (``GoogLeNetTV``) differs.
    """

    classifier_path = "classifier"
    norms: tuple[str, ...] = ("local_response", "batch", "none")
    kernel_5x5 = 5  # Table 1's "#5x5" branch
    pool4_kernel = 3  # Table 1's max pool 3x3/2 before 5a
    bn_eps = 1e-5  # PyTorch's, for norm="batch" (the paper has no batch norm)
    aux_pool = staticmethod(paper_aux_pool)  # Section 5's 5x5/3 average pool (to 4x4)
    native_input_size = (3, 224, 224)
    # 79 gives a 5x5 map on 4a, the least the aux heads' 5x5 average pool takes; without them 31 does: below it the
    # 3x3 max pool before 5a gets a 1x1 map
    min_input_size = 79
    min_input_size_without_aux = 31

    def __init__(
        self,
        *,
        aux_logits: bool = True,
        dropout: float = 0.4,
        aux_dropout: float = 0.7,
        norm: str = "local_response",
        **kwargs: Any,
    ) -> None:
        super().__init__(norm=norm, **kwargs)
        check_flag("aux_logits", aux_logits)
        in_channels, num_classes, activation = self.in_channels, self.num_classes, self.activation
        self.aux_logits = aux_logits
        if not aux_logits:
            self.min_input_size = self.min_input_size_without_aux
        conv_norm = "batch" if norm == "batch" else "none"  # local_response has places of its own
        conv_block = partial(basic_conv, activation=activation, norm=conv_norm, bn_eps=self.bn_eps)
        inception = partial(Inception, conv_block=conv_block, kernel_5x5=self.kernel_5x5)

        def local_response_norm() -> nn.Module:
            # Figure 3's LocalRespNorm; the paper gives no constants, these are AlexNet's n=5, alpha=1e-4, beta=0.75,
            # with k=1 as in the BVLC Caffe reproduction of GoogLeNet.
            if norm != "local_response":
                return nn.Identity()
            return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0)

        # Table 1 rows, with their output size. Max pools round up, as Caffe does, to give 56, 28, 14 and 7.
        self.conv1 = conv_block(in_channels, 64, kernel_size=7, stride=2, padding=3)  # conv 7x7/2: 112x112x64
        self.pool1 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)  # max pool 3x3/2: 56x56x64
        self.norm1 = local_response_norm()
        self.conv2_reduce = conv_block(64, 64, kernel_size=1)  # conv 3x3/1, "#3x3 reduce" 64: 56x56x64
        self.conv2 = conv_block(64, 192, kernel_size=3, padding=1)  # conv 3x3/1, "#3x3" 192: 56x56x192
        self.norm2 = local_response_norm()
        self.pool2 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)  # max pool 3x3/2: 28x28x192
        # in channels, then #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
        self.inception3a = inception(192, 64, 96, 128, 16, 32, 32)  # 28x28x256
        self.inception3b = inception(256, 128, 128, 192, 32, 96, 64)  # 28x28x480
        self.pool3 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)  # max pool 3x3/2: 14x14x480
        self.inception4a = inception(480, 192, 96, 208, 16, 48, 64)  # 14x14x512
        self.inception4b = inception(512, 160, 112, 224, 24, 64, 64)  # 14x14x512
        self.inception4c = inception(512, 128, 128, 256, 24, 64, 64)  # 14x14x512
        self.inception4d = inception(512, 112, 144, 288, 32, 64, 64)  # 14x14x528
        self.inception4e = inception(528, 256, 160, 320, 32, 128, 128)  # 14x14x832
        self.pool4 = nn.MaxPool2d(kernel_size=self.pool4_kernel, stride=2, ceil_mode=True)  # max pool 3x3/2: 7x7x832
        self.inception5a = inception(832, 256, 160, 320, 32, 128, 128)  # 7x7x832
        self.inception5b = inception(832, 384, 192, 384, 48, 128, 128)  # 7x7x1024
        # Section 5: the auxiliary classifiers on 4a and 4d
        aux_classifier = partial(AuxClassifier, conv_block=conv_block, dropout=aux_dropout, activation=activation)
        self.aux1 = aux_classifier(512, num_classes, self.aux_pool()) if aux_logits else None
        self.aux2 = aux_classifier(528, num_classes, self.aux_pool()) if aux_logits else None
        # avg pool 7x7/1 over the 7x7 map is a global average (after Network in Network); adaptive for other sizes
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # 1x1x1024
        self.dropout = nn.Dropout(p=dropout)  # dropout (40%)
        self.classifier = nn.Linear(1024, num_classes)  # linear: 1x1x1000
        self.init_weights(self.init, self.init_std)

    def _init_paper(self) -> None:
        # The paper does not state its initialisation (its model was trained with DistBelief). After the "xavier"
        # weight filler of the BVLC Caffe reproduction (bvlc_googlenet): Glorot & Bengio's uniform weights and zero
        # biases. Caffe's filler itself scales by the fan-in only, U(+-sqrt(3 / fan_in)), and that model starts the
        # hidden layers' biases at 0.2.
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:  # none in the convs followed by batch norm
                    nn.init.zeros_(module.bias)

    def _forward_stages(
        self, x: torch.Tensor, with_aux: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The 5b feature map, and the aux classifiers' logits (or None) on 4a and 4d."""
        x = self.conv1(x)  # 64x112x112
        x = self.norm1(self.pool1(x))  # 64x56x56
        x = self.conv2(self.conv2_reduce(x))  # 192x56x56
        x = self.pool2(self.norm2(x))  # 192x28x28
        x = self.inception3b(self.inception3a(x))  # 480x28x28
        x = self.inception4a(self.pool3(x))  # 512x14x14
        aux1 = self.aux1(x) if with_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # 528x14x14
        aux2 = self.aux2(x) if with_aux else None
        x = self.inception4e(x)  # 832x14x14
        x = self.inception5b(self.inception5a(self.pool4(x)))  # 1024x7x7
        return x, aux1, aux2

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 to inception 5b: the 1024x7x7 map at 224x224."""
        return self._forward_stages(x, with_aux=False)[0]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(features), 1)
        return self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The logits; in training with aux heads, the tuple ``(logits, aux1 logits, aux2 logits)``."""
        self.check_input(x)
        with_aux = self.training and self.aux_logits
        features, aux1, aux2 = self._forward_stages(x, with_aux)
        logits = self.forward_head(features)
        return (logits, aux1, aux2) if with_aux else logits

    def get_classifiers(self) -> list[nn.Module]:
        return [self.get_classifier(), *(aux.classifier for aux in (self.aux1, self.aux2) if aux is not None)]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer, and the aux heads' final layers, for ``num_classes`` classes."""
        super().reset_classifier(num_classes)
        for aux in (self.aux1, self.aux2):
            if aux is not None:
                old = aux.classifier
                aux.classifier = nn.Linear(old.in_features, num_classes).to(old.weight.device, old.weight.dtype)


# torchvision's names of the layers that ours name after Table 1 and the Caffe model
TORCHVISION_NAMES = {"conv2": "conv2_reduce", "conv3": "conv2", "fc": "classifier"}
TORCHVISION_INCEPTION_NAMES = {
    "branch1": "conv1x1",
    "branch2.0": "reduce3x3",
    "branch2.1": "conv3x3",
    "branch3.0": "reduce5x5",
    "branch3.1": "conv5x5",
    "branch4.1": "pool_proj",
}
TORCHVISION_AUX_NAMES = {"fc1": "fc", "fc2": "classifier"}


def rename_torchvision_key(key: str) -> str:
    """Our name of torchvision's GoogLeNet parameter ``key`` (``inception3a.branch2.1.conv.weight`` ->
    ``inception3a.conv3x3.conv.weight``)."""
    module, _, rest = key.partition(".")
    if module.startswith("inception"):
        for tv_name, name in TORCHVISION_INCEPTION_NAMES.items():
            if rest.startswith(tv_name + "."):
                return f"{module}.{name}.{rest.removeprefix(tv_name + '.')}"
    if module in ("aux1", "aux2"):
        layer, _, param = rest.partition(".")
        return f"{module}.{TORCHVISION_AUX_NAMES.get(layer, layer)}.{param}"
    return f"{TORCHVISION_NAMES.get(module, module)}.{rest}"


class GoogLeNetTV(GoogLeNet):
    """torchvision's GoogLeNet: batch norm, no LocalRespNorm, 3x3 "#5x5" convs, a 2x2 pool4, adaptive aux pools.

    ``transform_input`` re-standardises ImageNet-normalised images as torchvision's option does. It has batch norm
    only (without it its convs would have no bias); ``googlenet`` takes the other norms.
    """

    kernel_5x5 = 3  # https://github.com/pytorch/vision/issues/906
    pool4_kernel = 2
    bn_eps = 0.001
    aux_pool = staticmethod(partial(nn.AdaptiveAvgPool2d, 4))
    min_input_size = 15  # torchvision's figure too: below it the 3x3 max pool before 4a gets a 1x1 map
    min_input_size_without_aux = 15

    def __init__(self, *, transform_input: bool = False, dropout: float = 0.2, **kwargs: Any) -> None:
        super().__init__(dropout=dropout, norm="batch", **kwargs)  # batch norm only: googlenet_tv takes no norm
        self.transform_input = transform_input
        self.input_transform = input_transform(transform_input, self.in_channels)

    def _init_torchvision(self) -> None:
        # torchvision's init_weights=True: truncated normal (std 0.01, cut at +-2) for conv and linear weights,
        # batch norm at 1 and 0; the linear biases keep PyTorch's default.
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(module.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    _init_paper = _init_torchvision  # init="paper": this model's reference is torchvision's

    def _forward_stages(
        self, x: torch.Tensor, with_aux: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        if self.input_transform is not None:
            x = self.input_transform(x)
        return super()._forward_stages(x, with_aux)

    def convert_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename torchvision's keys to ours; without aux heads, drop torchvision's (as its pretrained loader does)."""
        return {
            rename_torchvision_key(key): value
            for key, value in state_dict.items()
            if self.aux_logits or not key.startswith(("aux1.", "aux2."))
        }


@register_model
def googlenet(**kwargs: Any) -> GoogLeNet:
    """GoogLeNet as in Table 1 (13,378,280 parameters for 1000 classes, 6,998,552 without the aux heads)."""
    return GoogLeNet(**kwargs)


@register_model(exclude=("norm",))
def googlenet_tv(**kwargs: Any) -> GoogLeNetTV:
    """torchvision's GoogLeNet (6,624,904 parameters for 1000 classes, 13,004,888 with the aux heads)."""
    return GoogLeNetTV(**kwargs)
