"""FractalNet: ultra-deep networks without residuals, built by a fractal expansion rule and regularised by drop-path.

G. Larsson, M. Maire, G. Shakhnarovich, "FractalNet: Ultra-Deep Neural Networks without Residuals", ICLR 2017
(arXiv:1605.07648).

The expansion rule (Section 2, Eq. 1): the base case is one convolutional layer, and each step joins two copies of
the previous fractal, one after the other, with a new convolution beside them:

    f_1(z) = conv(z)
    f_{C+1}(z) = join(f_C(f_C(z)), conv(z))

A block f_C has C columns; column i (1 the shallowest) holds 2^(i-1) convolutions, so the deepest path is 2^(C-1)
layers and the block 2^C - 1. Nested joins merge into one (Figure 1: the join at the end of f_4 has 4 inputs): a
join takes the outputs of every column that ends a convolution at the same depth and computes their element-wise
mean (Section 2: "we use the element-wise mean rather than concatenation or addition"); the merged columns then
continue from it. ``conv`` is a 3x3 convolution with batch norm and ReLU (Section 4: "convolution, batchnorm, then
ReLU"). B blocks follow each other, each followed by 2x2 max pooling with stride 2, and a fully-connected layer
gives the class scores: the network is B * 2^(C-1) layers deep along its deepest path.

The CIFAR network (Section 4, Table 1, "FractalNet (20 layers, 38.6M params)"): 32x32 input, B = 5 blocks, so that
the last pool leaves 1x1 maps, C = 3 columns (5 * 2^2 = 20 layers; the authors' generator, github.com/gustavla/
fractalnet ``generation/fractalnet.py``, has ``COLUMNS = 3``), and channels (64, 128, 256, 512, 512) in blocks 1 to 5:

    block   input       columns (convs)   output      pooled
    1       3x32x32     1, 2, 4           64x32x32    64x16x16
    2       64x16x16    1, 2, 4           128x16x16   128x8x8
    3       128x8x8     1, 2, 4           256x8x8     256x4x4
    4       256x4x4     1, 2, 4           512x4x4     512x2x2
    5       512x2x2     1, 2, 4           512x2x2     512x1x1
    fc      512                                       10

Parameters: each block has 7 convolutions, the first of each column (3) reading the block's input; with batch norm
after each and a 512 -> 10 classifier that is 33,724,618 (the arithmetic is in tests/test_fractalnet.py). The paper
prints 38.6M; the network its text and Eq. 1 describe, and the authors' generator, have 33.7M convolution weights
(3 x c_in x c_out x 9 + 4 x c_out^2 x 9 a block), and no detail the paper gives accounts for the other 4.9M.

Regularisation (Section 3.1, 4):

- dropout, a rate per block, (0%, 10%, 20%, 30%, 40%) on CIFAR ("similar to Clevert et al. (2016)"), applied, as in
  the authors' Caffe definition (``globals.crox``), to each convolution's output before its batch norm;
- drop-path. Local: each join drops each of its inputs with probability ``drop_path`` (15% "across the entire
  network"), keeping at least one (one chosen at random when all were dropped), and averages those it keeps. Global:
  a single column is chosen for the whole network, every join passes that column's input alone, so the network is
  that column of every block, a plain chain of B * 2^(i-1) convolutions. The paper trains with "a mixture model of
  50% local and 50% global sampling", drawn per mini-batch: ``global_drop`` is the fraction of mini-batches that
  take a global column (uniformly among the C). At evaluation nothing is dropped: every join averages all its inputs.

The draws use torch's CPU generator (``torch.manual_seed`` repeats them), so drop-path never waits for a GPU.

Switches: ``activation`` replaces every ReLU, ``norm`` every batch norm (``batch``, the paper's; ``group``, ``layer``;
``none``, with a bias in each convolution instead). Convolutions have no bias when a norm follows them.

Initialisation (``init="paper"``): Section 4 uses Xavier initialisation; the authors' Caffe filler "xavier" draws
uniformly with variance 1/fan_in (``bound = sqrt(3 / fan_in)``), biases zero; batch norms start as the identity.

Two details follow the paper's figure rather than the authors' generator: the block's last join comes before the pool
(the generator pools each column, then joins), and the classifier reads the pooled map through a global average pool,
the identity at 32x32, so that larger images work too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from models._activations import make_activation
from models._base import ClassifierNet, check_rate
from models._norms import make_norm
from models._registry import register_model

# Section 4, CIFAR: the channels of blocks 1 to 5 and the dropout rate of each block
CIFAR_CHANNELS = (64, 128, 256, 512, 512)
CIFAR_DROPOUT = (0.0, 0.1, 0.2, 0.3, 0.4)


def conv_unit(in_channels: int, out_channels: int, dropout: float, activation: str, norm: str) -> nn.Sequential:
    """Eq. 1's ``conv``: a padded 3x3 convolution, dropout (the authors' place for it), the norm, the activation."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=norm == "none"),
            drop=nn.Dropout(dropout),
            norm=make_norm(norm, out_channels),
            act=make_activation(activation, out_channels, inplace=True),
        )
    )


class Join(nn.Module):
    """The element-wise mean of the inputs (Section 2); in training, local drop-path drops each input with
    probability ``drop_path`` and averages those kept, at least one (Section 3.1)."""

    def __init__(self, drop_path: float) -> None:
        super().__init__()
        self.drop_path = drop_path

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.training and self.drop_path > 0:
            keep = torch.rand(len(inputs), device="cpu") >= self.drop_path
            if not keep.any():
                keep[torch.randint(len(inputs), (), device="cpu")] = True
            inputs = [x for x, kept in zip(inputs, keep.tolist(), strict=True) if kept]
        return torch.stack(list(inputs)).mean(0)


class FractalBlock(nn.Module):
    """f_C of Eq. 1 laid out by columns: ``columns[i]`` is a chain of 2^i conv units (i = 0 the shallowest), and after
    each conv of the deepest column every column that ends a conv there is joined."""

    def __init__(
        self,
        num_columns: int,
        in_channels: int,
        out_channels: int,
        *,
        dropout: float,
        drop_path: float,
        activation: str,
        norm: str,
    ) -> None:
        super().__init__()
        self.columns = nn.ModuleList(
            nn.Sequential(
                *(
                    conv_unit(in_channels if k == 0 else out_channels, out_channels, dropout, activation, norm)
                    for k in range(2**i)
                )
            )
            for i in range(num_columns)
        )
        self.join = Join(drop_path)

    def forward(self, x: torch.Tensor, column: int | None = None) -> torch.Tensor:
        """The block on ``x``: every column and their joins, or ``column`` alone (global drop-path)."""
        if column is not None:
            return self.columns[column](x)
        deepest = len(self.columns) - 1
        inputs = [x] * len(self.columns)  # what each column's next conv reads
        for depth in range(1, 2**deepest + 1):
            # column i's convs span 2^(deepest - i) convs of the deepest column; those ending at this depth are joined
            ending = [i for i in range(len(self.columns)) if depth % 2 ** (deepest - i) == 0]
            outputs = [self.columns[i][depth // 2 ** (deepest - i) - 1](inputs[i]) for i in ending]
            out = self.join(outputs) if len(outputs) > 1 else outputs[0]
            for i in ending:
                inputs[i] = out
        return out


class FractalNet(ClassifierNet):
    """B = ``len(channels)`` fractal blocks of ``columns`` columns, each followed by 2x2 max pooling, then a
    fully-connected classifier (Section 4)."""

    classifier_path = "fc"
    native_input_size = (3, 32, 32)
    norms = ("batch", "group", "layer", "none")

    def __init__(
        self,
        channels: Sequence[int],
        columns: int,
        *,
        dropout: Sequence[float] = CIFAR_DROPOUT,
        drop_path: float = 0.15,
        global_drop: float = 0.5,
        num_classes: int = 10,
        norm: str = "batch",
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, norm=norm, **kwargs)
        if not channels or not all(isinstance(c, int) and c > 0 for c in channels):
            raise ValueError(f"channels must be positive integers, one a block, got {channels!r}")
        if not isinstance(columns, int) or columns < 1:
            raise ValueError(f"columns must be a positive integer, got {columns!r}")
        if len(dropout) != len(channels):
            raise ValueError(f"dropout must give one rate a block ({len(channels)} blocks), got {list(dropout)!r}")
        for rate in dropout:
            check_rate("dropout", rate)
        check_rate("drop_path", drop_path)
        if not 0 <= global_drop <= 1:
            raise ValueError(f"global_drop must be in [0, 1], got {global_drop!r}")
        self.channels, self.columns = tuple(channels), columns
        self.dropout, self.drop_path, self.global_drop = tuple(dropout), drop_path, global_drop
        self.min_input_size = 2 ** len(channels)  # each block's pool halves the maps, rounding down
        inputs = (self.in_channels, *channels[:-1])  # each block reads the one before it
        self.blocks = nn.ModuleList(
            FractalBlock(columns, c_in, width, dropout=rate, drop_path=drop_path, activation=self.activation, norm=norm)
            for c_in, width, rate in zip(inputs, channels, dropout, strict=True)
        )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)  # after every block
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # the identity at the native size: the last pool leaves 1x1 maps
        self.fc = nn.Linear(channels[-1], self.num_classes)
        self.init_weights(self.init, self.init_std)

    def _init_paper(self) -> None:
        # Section 4: Xavier initialisation, Caffe's filler (uniform, variance 1/fan_in); zero biases, identity norms
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_uniform_(module.weight, a=1)  # gain 1: bound sqrt(3 / fan_in)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def global_column(self) -> int | None:
        """The column that global drop-path keeps for this mini-batch, drawn in training for a ``global_drop``
        fraction of mini-batches (uniformly among the columns); None for the others (local drop-path) and in eval."""
        if not self.training or torch.rand((), device="cpu") >= self.global_drop:
            return None
        return int(torch.randint(self.columns, (), device="cpu"))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The B blocks, each pooled: 512x1x1 for a 32x32 image."""
        column = self.global_column()
        for block in self.blocks:
            x = self.pool(block(x, column))
        return x

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(features), 1))


@register_model
def fractalnet20(**kwargs: Any) -> FractalNet:
    """FractalNet for CIFAR (Section 4, Table 1): B = 5 blocks of C = 3 columns, 20 layers deep, channels 64, 128,
    256, 512, 512; 33,724,618 parameters for 10 classes (the paper prints 38.6M)."""
    return FractalNet(CIFAR_CHANNELS, 3, **kwargs)
