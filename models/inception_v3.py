"""Inception-v3.

C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna, "Rethinking the Inception Architecture for Computer
Vision", CVPR 2016. Table 1 (the outline; "input size" is each row's input):

    type          patch size/stride   input size
    conv          3x3/2               299x299x3
    conv          3x3/1               149x149x32
    conv padded   3x3/1               147x147x32
    pool          3x3/2               147x147x64
    conv          3x3/1               73x73x64
    conv          3x3/2               71x71x80
    conv          3x3/1               35x35x192
    3 x Inception as in Figure 5      35x35x288
    5 x Inception as in Figure 6      17x17x768
    2 x Inception as in Figure 7      8x8x1280
    pool          8x8                 8x8x2048
    linear        logits              1x1x2048
    softmax       classifier          1x1x1000

``inception_v3`` is the network Google released with the paper, as torchvision has it (``torchvision.models.
inception_v3``, the weights "ported from the original paper"), whose names (``Conv2d_1a_3x3``, ``Mixed_5b``, ...)
and layers it keeps so that torchvision's weights load as they are. Where the release departs from Table 1's rows:
after the first pool come a 1x1 conv to 80 maps and a 3x3 conv to 192 (73 -> 71), then a 3x3/2 max pool (71 -> 35)
where Table 1 has two 3x3 convs, the second strided; the three Figure 5 modules (35x35, 256, 288 and 288 maps out)
have a 1x1 -> 5x5 branch beside Figure 5's 1x1 -> 3x3 -> 3x3 one; the first module of the "5 x" and of the "2 x" rows
is a grid reduction (Figure 10: stride-2 conv branches beside a stride-2 max pool, concatenated), 35 -> 17 and
17 -> 8, so there are four Figure 6 modules (n = 7: 1x7 and 7x1 convs; 128, 160, 160, 192 channels inside) and two
Figure 7 modules (the expanded filter bank of the 8x8 grid). Every convolution is followed by batch norm (eps 0.001)
and a ReLU, and has no bias.

The auxiliary classifier (Section 4, Figure 8) sits on the last 17x17 map (``Mixed_6e``): a 5x5/3 average pool to
5x5, a 1x1 conv to 128 maps, then, in the release, a 5x5 conv to 768 and a linear layer (Figure 8 draws a
fully-connected layer of 1024); its convs are batch-normalised as every conv of the release (Table 3's last row,
"BN-auxiliary", the model the paper calls Inception-v3, normalises the head's fully-connected layer too). In
training mode with ``aux_logits=True``, ``forward`` returns ``(logits, aux_logits)`` and the training module adds
the auxiliary loss with its ``aux_loss_weight`` (the paper states no weight; the released model's TF-slim training
script uses 0.4). The head's 5x5 conv needs a 17x17 map on ``Mixed_6e``: the model takes 299x299 inputs or more
(the head runs in training only, but a size that evaluation takes and training does not would fail mid-run); with
``aux_logits=False`` it takes 75x75 and up (torchvision's ``min_size``).

For 1000 classes ``inception_v3`` has 27,161,264 parameters, 23,834,568 without the auxiliary head, and 5.713 G
multiply-adds at 299x299 (torchvision's figures). ``init="paper"`` is torchvision's initialisation of this network:
weights from a normal of std 0.1 (0.001 for the auxiliary head's linear layer) cut at +-2, batch norm at 1 and 0, the
linear biases at PyTorch's default; the paper does not state one (TF-slim's release draws a normal of std 0.1
truncated at two stds, 0.01 for the auxiliary head's 5x5 conv and 0.001 for its linear layer).

``transform_input`` re-standardises ImageNet-normalised images to the [-1, 1] scale the released weights expect, as
torchvision does when it loads them. ``activation`` replaces every ReLU; ``norm`` is batch (the release's), group or
layer norm in its place, or none (the convs then with a bias).
"""

from __future__ import annotations

import abc
from functools import partial
from typing import Any

import torch
from torch import nn

from models._base import ClassifierNet, check_flag
from models._registry import register_model
from models.googlenet import ConvBlock, basic_conv, input_transform


class Mixed(nn.Module, abc.ABC):
    """A module whose branches' outputs are concatenated ("Filter Concat"); subclasses give the branches."""

    @abc.abstractmethod
    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of the module's branches, in the order they are concatenated."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.branches(x), dim=1)


class InceptionFig5(Mixed):
    """Figure 5 on the 35x35 grid (the release's: a 5x5 branch beside the 3x3 ones): 224 + ``pool_features`` maps."""

    def __init__(self, in_channels: int, pool_features: int, conv_block: ConvBlock) -> None:
        super().__init__()
        self.branch1x1 = conv_block(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = conv_block(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = conv_block(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = conv_block(in_channels, 64, kernel_size=1)  # Figure 5: a 5x5 as two 3x3s
        self.branch3x3dbl_2 = conv_block(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = conv_block(96, 96, kernel_size=3, padding=1)
        self.pool = nn.AvgPool2d(kernel_size=3, stride=1, padding=1)
        self.branch_pool = conv_block(in_channels, pool_features, kernel_size=1)

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(self.pool(x)),
        ]


class GridReduction35(Mixed):
    """Figure 10 from 35x35x288 to 17x17x768: a 3x3/2 conv, 1x1 -> 3x3 -> 3x3/2, and a 3x3/2 max pool."""

    def __init__(self, in_channels: int, conv_block: ConvBlock) -> None:
        super().__init__()
        self.branch3x3 = conv_block(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = conv_block(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = conv_block(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = conv_block(96, 96, kernel_size=3, stride=2)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2)

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.pool(x),
        ]


class InceptionFig6(Mixed):
    """Figure 6 on the 17x17 grid with n = 7: 7x7 convolutions factorised into 1x7 and 7x1; 768 maps out."""

    def __init__(self, in_channels: int, channels_7x7: int, conv_block: ConvBlock) -> None:
        super().__init__()
        c = channels_7x7
        row, column = {"kernel_size": (1, 7), "padding": (0, 3)}, {"kernel_size": (7, 1), "padding": (3, 0)}
        self.branch1x1 = conv_block(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = conv_block(in_channels, c, kernel_size=1)
        self.branch7x7_2 = conv_block(c, c, **row)
        self.branch7x7_3 = conv_block(c, 192, **column)
        self.branch7x7dbl_1 = conv_block(in_channels, c, kernel_size=1)
        self.branch7x7dbl_2 = conv_block(c, c, **column)
        self.branch7x7dbl_3 = conv_block(c, c, **row)
        self.branch7x7dbl_4 = conv_block(c, c, **column)
        self.branch7x7dbl_5 = conv_block(c, 192, **row)
        self.pool = nn.AvgPool2d(kernel_size=3, stride=1, padding=1)
        self.branch_pool = conv_block(in_channels, 192, kernel_size=1)

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        double = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
            double = layer(double)
        return [
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            self.branch7x7dbl_5(double),
            self.branch_pool(self.pool(x)),
        ]


class GridReduction17(Mixed):
    """Figure 10 from 17x17x768 to 8x8x1280: 1x1 -> 3x3/2, 1x1 -> 1x7 -> 7x1 -> 3x3/2, and a 3x3/2 max pool."""

    def __init__(self, in_channels: int, conv_block: ConvBlock) -> None:
        super().__init__()
        self.branch3x3_1 = conv_block(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = conv_block(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = conv_block(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = conv_block(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = conv_block(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = conv_block(192, 192, kernel_size=3, stride=2)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2)

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        seven = self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x)))
        return [self.branch3x3_2(self.branch3x3_1(x)), self.branch7x7x3_4(seven), self.pool(x)]


class InceptionFig7(Mixed):
    """Figure 7 on the 8x8 grid, the expanded filter bank: 3x3s split into parallel 1x3 and 3x1; 2048 maps out."""

    def __init__(self, in_channels: int, conv_block: ConvBlock) -> None:
        super().__init__()
        row, column = {"kernel_size": (1, 3), "padding": (0, 1)}, {"kernel_size": (3, 1), "padding": (1, 0)}
        self.branch1x1 = conv_block(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = conv_block(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = conv_block(384, 384, **row)
        self.branch3x3_2b = conv_block(384, 384, **column)
        self.branch3x3dbl_1 = conv_block(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = conv_block(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = conv_block(384, 384, **row)
        self.branch3x3dbl_3b = conv_block(384, 384, **column)
        self.pool = nn.AvgPool2d(kernel_size=3, stride=1, padding=1)
        self.branch_pool = conv_block(in_channels, 192, kernel_size=1)

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return [
            self.branch1x1(x),
            self.branch3x3_2a(single),
            self.branch3x3_2b(single),
            self.branch3x3dbl_3a(double),
            self.branch3x3dbl_3b(double),
            self.branch_pool(self.pool(x)),
        ]


class AuxHead(nn.Module):
    """The auxiliary classifier on the 17x17x768 map (Section 4, Figure 8, with batch norm as in Section 7)."""

    def __init__(self, in_channels: int, num_classes: int, conv_block: ConvBlock) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(kernel_size=5, stride=3)  # 17x17 -> 5x5
        self.conv0 = conv_block(in_channels, 128, kernel_size=1)  # 5x5x128
        self.conv1 = conv_block(128, 768, kernel_size=5)  # 1x1x768 (the release's; Figure 8: FC 1024)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # the identity at 299x299; larger inputs leave more than 1x1
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.conv1(self.conv0(self.pool(x))))
        return self.fc(torch.flatten(x, 1))


class InceptionV3(ClassifierNet):
    """Inception-v3 as released (torchvision's layers and names), with the auxiliary head when ``aux_logits``."""

    classifier_path = "fc"
    norms: tuple[str, ...] = ("batch", "group", "layer", "none")
    native_input_size = (3, 299, 299)
    # the aux head's 5x5 conv needs a 17x17 map on Mixed_6e (5x5 after its 5x5/3 pool): 299x299 inputs. The head
    # runs in training only, but the size is the model's in both modes, as training would meet it
    min_input_size = 299
    # torchvision's min_size, without the aux head: at 74 the 3x3/2 convs of Mixed_7a get a 2x2 map
    min_input_size_without_aux = 75
    bn_eps = 0.001  # the release's (TF's default)

    def __init__(
        self,
        *,
        aux_logits: bool = True,
        transform_input: bool = False,
        dropout: float = 0.5,
        norm: str = "batch",
        **kwargs: Any,
    ) -> None:
        super().__init__(norm=norm, **kwargs)
        check_flag("aux_logits", aux_logits)
        self.aux_logits = aux_logits
        if not aux_logits:
            self.min_input_size = self.min_input_size_without_aux
        self.transform_input = transform_input
        self.input_transform = input_transform(transform_input, self.in_channels)
        conv = partial(basic_conv, activation=self.activation, norm=norm, bn_eps=self.bn_eps)
        # Table 1's rows as released; each comment gives the output at 299x299
        self.Conv2d_1a_3x3 = conv(self.in_channels, 32, kernel_size=3, stride=2)  # conv 3x3/2: 149x149x32
        self.Conv2d_2a_3x3 = conv(32, 32, kernel_size=3)  # conv 3x3/1: 147x147x32
        self.Conv2d_2b_3x3 = conv(32, 64, kernel_size=3, padding=1)  # conv padded 3x3/1: 147x147x64
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)  # pool 3x3/2: 73x73x64
        self.Conv2d_3b_1x1 = conv(64, 80, kernel_size=1)  # 73x73x80 (Table 1: conv 3x3/1, 71x71x80)
        self.Conv2d_4a_3x3 = conv(80, 192, kernel_size=3)  # 71x71x192 (Table 1: conv 3x3/2, 35x35x192)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)  # 35x35x192
        self.Mixed_5b = InceptionFig5(192, 32, conv)  # 3 x Figure 5: 35x35x256
        self.Mixed_5c = InceptionFig5(256, 64, conv)  # 35x35x288
        self.Mixed_5d = InceptionFig5(288, 64, conv)  # 35x35x288
        self.Mixed_6a = GridReduction35(288, conv)  # Figure 10: 17x17x768
        self.Mixed_6b = InceptionFig6(768, 128, conv)  # 4 x Figure 6: 17x17x768
        self.Mixed_6c = InceptionFig6(768, 160, conv)
        self.Mixed_6d = InceptionFig6(768, 160, conv)
        self.Mixed_6e = InceptionFig6(768, 192, conv)
        self.AuxLogits = AuxHead(768, self.num_classes, conv) if aux_logits else None  # Section 4, on 17x17x768
        self.Mixed_7a = GridReduction17(768, conv)  # Figure 10: 8x8x1280
        self.Mixed_7b = InceptionFig7(1280, conv)  # 2 x Figure 7: 8x8x2048
        self.Mixed_7c = InceptionFig7(2048, conv)  # 8x8x2048
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # pool 8x8: 1x1x2048
        self.dropout = nn.Dropout(p=dropout)  # torchvision's 0.5 before the logits (TF-slim's release drops 20%)
        self.fc = nn.Linear(2048, self.num_classes)  # linear: logits
        self.init_weights(self.init, self.init_std)

    def _resize_hint(self, height: int, width: int) -> str:
        hint = super()._resize_hint(height, width)
        if self.aux_logits:
            hint += f"; without the auxiliary head (aux_logits=False) it takes {self.min_input_size_without_aux} and up"
        return hint

    def _init_paper(self) -> None:
        # torchvision's init_weights=True (the paper states none): a normal cut at +-2 (absolute, not in stds) of
        # std 0.1, 0.001 for the aux head's linear layer; batch norm at 1 and 0. torchvision marks its aux 5x5 conv
        # block with std 0.01 too, but reads the mark on the Conv2d inside it, so that conv gets 0.1 as well.
        stds = {} if self.AuxLogits is None else {self.AuxLogits.fc: 0.001}
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(module.weight, mean=0.0, std=stds.get(module, 0.1), a=-2, b=2)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def _forward_stages(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The Mixed_7c feature map, and the aux head's logits on Mixed_6e (or None)."""
        if self.input_transform is not None:
            x = self.input_transform(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # 147x147x64
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(self.maxpool1(x)))  # 71x71x192
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(self.maxpool2(x))))  # 35x35x288
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(self.Mixed_6a(x)))))  # 17x17x768
        aux = self.AuxLogits(x) if with_aux else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))  # 8x8x2048
        return x, aux

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Conv2d_1a_3x3 to Mixed_7c: the 2048x8x8 map at 299x299."""
        return self._forward_stages(x, with_aux=False)[0]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.dropout(self.avgpool(features)), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The logits; in training with the aux head, the tuple ``(logits, aux logits)``."""
        self.check_input(x)
        with_aux = self.training and self.aux_logits
        features, aux = self._forward_stages(x, with_aux)
        logits = self.forward_head(features)
        return (logits, aux) if with_aux else logits

    def get_classifiers(self) -> list[nn.Module]:
        return [self.fc, *([] if self.AuxLogits is None else [self.AuxLogits.fc])]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer, and the aux head's, for ``num_classes`` classes."""
        super().reset_classifier(num_classes)
        if self.AuxLogits is not None:
            old = self.AuxLogits.fc
            self.AuxLogits.fc = nn.Linear(old.in_features, num_classes).to(old.weight.device, old.weight.dtype)

    def convert_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """torchvision's keys are ours; without the aux head, drop its weights (as torchvision's loader does)."""
        return {key: value for key, value in state_dict.items() if self.aux_logits or not key.startswith("AuxLogits.")}


@register_model
def inception_v3(**kwargs: Any) -> InceptionV3:
    """Inception-v3 as released with the paper and in torchvision (27,161,264 parameters for 1000 classes,
    23,834,568 without the auxiliary head)."""
    return InceptionV3(**kwargs)
