"""ZFNet.

M. D. Zeiler, R. Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014. Figure 3
gives the layout followed here, AlexNet with a smaller, denser first layer (Section 4.1):

    input 3x224x224
    conv1  96@7x7 stride 2 pad 1  -> 96x110x110,  ReLU, max-pool 3x3 stride 2 -> 96x55x55, normalise
    conv2  256@5x5 stride 2       -> 256x26x26,   ReLU, max-pool 3x3 stride 2 -> 256x13x13, normalise
    conv3  384@3x3 pad 1          -> 384x13x13,   ReLU
    conv4  384@3x3 pad 1          -> 384x13x13,   ReLU
    conv5  256@3x3 pad 1          -> 256x13x13,   ReLU, max-pool 3x3 stride 2 -> 256x6x6
    FC6 4096, FC7 4096 (each ReLU then dropout 0.5), output num_classes

Figure 3 gives kernel sizes and strides but no padding. To get its map sizes exactly, conv1 pads by one
pixel (224 -> 110; unpadded it gives 109), conv2 not at all (55 -> 26), conv3-5 by one (13 stays 13),
and the pools round up as Caffe's do (``ceil_mode``: 110 -> 55, 26 -> 13, 13 -> 6; rounding down would
give 54 and 12). The paper's "contrast normalisation across feature maps" is AlexNet's local response
normalisation with AlexNet's constants (the paper gives none). ``wide=True`` is model (b) of Table 2, with
512, 1024 and 512 kernels in conv3-5 (Table 3, "layers 3,4,5: 512,1024,512 maps").

``norm`` keeps that normalisation after pool1 and pool2 (``local_response``, the default), puts batch norm after
every conv, before its activation, instead (``batch``), or drops it (``none``); ``activation`` replaces the ReLUs
and ``dropconnect`` makes layers 6 and 7 drop weights, as in ``alexnet``.

With 1000 classes the network has 62,357,608 parameters, and 107,627,624 with ``wide=True``. FC6 takes
exactly the 6x6 maps of pool5, which images of 207 to 238 pixels give; other sizes raise a ValueError.
The paper also renormalises, during training, every conv filter whose RMS exceeds 0.1 back to 0.1
(Section 3); that belongs to the training loop, not to the module.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Any

import torch
from torch import nn

from models._base import ClassifierNet, check_rate
from models._registry import register_model
from models.alexnet import AlexNet, add_conv, fully_connected_head, init_normal, local_response_norm

# Section 3: "All weights are initialized to 10^-2 and biases are set to 0." Equal weights would keep every
# filter of a layer the same, so 10^-2 is read as the standard deviation of a zero-mean normal, as in AlexNet.
PAPER_INIT_STD = 0.01


def check_flag(name: str, value: bool) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


class ZFNet(ClassifierNet):
    """ZFNet of Figure 3 for 224x224 images, or model (b) of Table 2 with ``wide=True``."""

    classifier_path = "classifier.fc8"
    native_input_size = (3, 224, 224)
    min_input_size = 207  # conv1 102 -> pool1 51 -> conv2 24 -> pool2 12 -> pool5 6x6; 206 gives 5x5 at pool5
    max_input_size = 238  # the last size whose pool5 maps are 6x6; 239 gives 7x7
    norms = AlexNet.norms

    def __init__(
        self,
        *,
        dropout: float = 0.5,
        wide: bool = False,
        norm: str = "local_response",
        dropconnect: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(norm=norm, **kwargs)
        check_rate("dropout", dropout)
        check_flag("wide", wide)
        width3, width4, width5 = (512, 1024, 512) if wide else (384, 384, 256)  # Table 3 / Figure 3
        layers: OrderedDict[str, nn.Module] = OrderedDict()

        conv = partial(add_conv, layers, activation=self.activation, norm=norm)

        def pool(index: int) -> None:  # Figure 3: contrast normalisation after the pools of layers 1 and 2
            layers[f"pool{index}"] = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
            if norm == "local_response" and index in (1, 2):
                layers[f"norm{index}"] = local_response_norm()

        conv(1, nn.Conv2d(self.in_channels, 96, kernel_size=7, stride=2, padding=1))  # 96x110x110
        pool(1)  # 96x55x55
        conv(2, nn.Conv2d(96, 256, kernel_size=5, stride=2))  # 256x26x26
        pool(2)  # 256x13x13
        conv(3, nn.Conv2d(256, width3, kernel_size=3, padding=1))  # 384x13x13
        conv(4, nn.Conv2d(width3, width4, kernel_size=3, padding=1))  # 384x13x13
        conv(5, nn.Conv2d(width4, width5, kernel_size=3, padding=1))  # 256x13x13
        pool(5)  # 256x6x6
        self.features = nn.Sequential(layers)
        # layers 6, 7 and output
        self.classifier = fully_connected_head(width5 * 6 * 6, self.num_classes, dropout, self.activation, dropconnect)
        self.init_weights(self.init, self.init_std)

    def _init_paper(self) -> None:
        # Section 3: weights 10^-2 (a standard deviation here, see PAPER_INIT_STD), biases 0.
        init_normal(self, PAPER_INIT_STD)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 to pool5: 256 maps (512 if wide) of 6x6."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Flatten the 6x6 maps and apply FC6, FC7 and the output layer."""
        return self.classifier(torch.flatten(features, 1))


@register_model
def zfnet(**kwargs: Any) -> ZFNet:
    """ZFNet of Figure 3, 224x224 input (62,357,608 parameters for 1000 classes; 107,627,624 with ``wide``)."""
    return ZFNet(**kwargs)
