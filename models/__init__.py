"""Classic architectures as plain ``nn.Module``s: the CNN zoo, built by name through a registry, and the
recurrent networks (``models.rnn``, ``models.sequence``).

The public API is what this module exports (as ``torchvision.models`` and ``timm``'s): building by name
(``create_model``, ``list_models``, ...), loading state dicts and reading weights files as untrusted data
(``load_pretrained``, ``read_state_dict``, ``load_file``, ...), and the layers and schemes the families share
(``make_activation``, ``make_norm``, ``init_weights``, stochastic depth's ``ResidualBlock`` and
``add_stochastic_depth``, ...). The modules whose names start with ``_`` are internal. Nothing here knows how the
training code stores its checkpoints: it takes state dicts.
"""

from models import (
    alexnet,
    char_rnn,
    densenet,
    fractalnet,
    googlenet,
    inception_v3,
    lenet,
    nin,
    preact_resnet,
    resnet,
    resnext,
    rnn,
    sequence,
    squeezenet,
    vgg,
    wide_resnet,
    xception,
    zfnet,
)
from models._activations import ACTIVATIONS, ChannelMaxout, Maxout, ScaledTanh, make_activation
from models._base import ClassifierNet
from models._dropconnect import DropConnectLinear
from models._init import INIT_SCHEMES, init_weights
from models._norms import NORMS, make_norm
from models._pretrained import (
    TORCHVISION_NAMES,
    ClassCountMismatch,
    as_state_dict,
    check_finite,
    load_file,
    load_pretrained,
    load_torchvision_weights,
    load_weights_file,
    read_state_dict,
)
from models._registry import (
    close_matches,
    create_model,
    did_you_mean,
    get_model_builder,
    list_models,
    register_model,
)
from models._stochastic_depth import ResidualBlock, add_stochastic_depth, drop_path_rates
from models.lenet import LeNet5

__all__ = [
    "ACTIVATIONS",
    "INIT_SCHEMES",
    "NORMS",
    "TORCHVISION_NAMES",
    "ChannelMaxout",
    "ClassCountMismatch",
    "ClassifierNet",
    "DropConnectLinear",
    "LeNet5",
    "Maxout",
    "ResidualBlock",
    "ScaledTanh",
    "add_stochastic_depth",
    "alexnet",
    "as_state_dict",
    "char_rnn",
    "check_finite",
    "close_matches",
    "create_model",
    "densenet",
    "did_you_mean",
    "drop_path_rates",
    "fractalnet",
    "get_model_builder",
    "googlenet",
    "inception_v3",
    "init_weights",
    "lenet",
    "list_models",
    "load_file",
    "load_pretrained",
    "load_torchvision_weights",
    "load_weights_file",
    "make_activation",
    "make_norm",
    "nin",
    "preact_resnet",
    "read_state_dict",
    "register_model",
    "resnet",
    "resnext",
    "rnn",
    "sequence",
    "squeezenet",
    "vgg",
    "wide_resnet",
    "xception",
    "zfnet",
]
