"""The interface every classifier of the zoo shares, after timm's.

``forward(x) = forward_head(forward_features(x))``; ``get_classifier()`` is the last layer, the one
that maps features to class scores, and ``reset_classifier(n)`` replaces it for ``n`` classes, so
fine-tuning code works on every model. ``forward`` first checks the input, so a model that cannot
take an image size says so (and names its minimum) instead of failing inside a conv layer.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from models._init import DEFAULT_STD, init_weights
from models._norms import check_norm


def check_rate(name: str, rate: float) -> None:
    """Raise ``ValueError`` in one line when the dropout-like ``rate`` called ``name`` is not in [0, 1)."""
    if not 0 <= rate < 1:
        raise ValueError(f"{name} must be in [0, 1), got {rate!r}")


def check_flag(name: str, value: object) -> None:
    """Raise ``ValueError`` in one line when the option called ``name`` is not a bool."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def rename_layers(state_dict: Mapping[str, torch.Tensor], names: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """``state_dict`` with the layers of ``names`` renamed (``features.3.weight`` -> ``features.conv2.weight`` for
    ``{"features.3": "features.conv2"}``), as loading torchvision's weights into a family that names its layers
    needs; other keys are left for the loader to report."""

    def rename(key: str) -> str:
        for old, new in names.items():
            if key.startswith(f"{old}."):
                return new + key[len(old) :]
        return key

    return {rename(key): value for key, value in state_dict.items()}


class ClassifierNet(nn.Module):
    """Base of the image classifiers. Subclasses set the class attributes and the two forward halves.

    ``classifier_path`` is the dotted name of the final layer (``"fc"``, ``"classifier.fc8"``),
    ``native_input_size`` the paper's (channels, height, width), ``min_input_size`` the smallest
    height and width the network takes and ``max_input_size`` the largest, for networks whose
    fully-connected layers take feature maps of one size only (AlexNet, ZFNet). ``norms`` are the kinds of
    ``norm`` (``models._norms``) the network takes, in the order its error names them (only ``none`` for a network
    without the option). ``input_field`` is set by a
    network that takes one size only and whose paper centred smaller images in it (LeNet-5's 32x32 field): the
    training stack pads smaller images to it, instead of asking for a resize.

    The constructor takes the switches every family shares, keyword-only (a family's own arguments come before
    them), and checks them. A family passes them on with ``**kwargs``, naming those whose default it changes, builds
    its layers from ``self.activation`` and ``self.norm``, and ends with ``self.init_weights(self.init,
    self.init_std)``.
    """

    classifier_path: str = "classifier"
    native_input_size: tuple[int, int, int] = (3, 224, 224)
    min_input_size: int = 1
    max_input_size: int | None = None
    norms: tuple[str, ...] = ("none",)
    input_field: int | None = None

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        *,
        activation: str = "relu",
        norm: str = "none",
        init: str = "paper",
        init_std: float = DEFAULT_STD,
    ) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
        check_norm(self, norm)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.activation = activation  # a name of models._activations, made into layers by the family
        self.norm = norm
        self.init = init  # applied by the family's constructor once its layers exist
        self.init_std = init_std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the accepted input when ``x`` is not a batch the network can take."""
        name = type(self).__name__
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{name} takes a batch of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if min(height, width) < self.min_input_size:
            raise ValueError(
                f"{name} needs images of at least {self.min_input_size}x{self.min_input_size} pixels "
                + self._resize_hint(height, width)
            )
        if self.max_input_size is not None and max(height, width) > self.max_input_size:
            raise ValueError(
                f"{name} takes images of {self.min_input_size} to {self.max_input_size} pixels a side, "
                "the sizes whose last feature maps fit its fully-connected layers " + self._resize_hint(height, width)
            )

    def _resize_hint(self, height: int, width: int) -> str:
        """The end of an input-size error: the paper's size, the size given, and the setting that resizes."""
        _, paper_height, paper_width = self.native_input_size
        return (
            f"(its paper used {paper_height}x{paper_width}), got {height}x{width}; "
            f"resize the data (data.image_size={paper_height})"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_path)

    def get_classifiers(self) -> list[nn.Module]:
        """Every layer that outputs class scores: the final one and any auxiliary heads' (GoogLeNet's), the layers
        that ``reset_classifier`` replaces and that fine-tuning trains as new."""
        return [self.get_classifier()]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer with a freshly initialised one for ``num_classes`` classes."""
        old = self.get_classifier()
        if isinstance(old, nn.Linear):
            new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        elif isinstance(old, nn.Conv2d):
            new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding)
        else:
            raise TypeError(f"cannot reset a classifier of type {type(old).__name__}")
        self.set_submodule(self.classifier_path, new.to(old.weight.device, old.weight.dtype))
        self.num_classes = num_classes

    def init_weights(self, scheme: str = "paper", std: float = DEFAULT_STD) -> None:
        """Initialise the weights as the paper did (``"paper"``) or with a named scheme from ``models._init``;
        ``std`` is that of ``"normal"``."""
        if scheme == "paper":
            self._init_paper()
        else:
            init_weights(self, scheme, std)

    def _init_paper(self) -> None:
        """The paper's own initialisation; PyTorch's defaults unless a family overrides it."""
