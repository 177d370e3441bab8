"""Classic architectures as plain ``nn.Module``s: the CNN zoo, built by name through a registry, and the
recurrent networks (``models.rnn``, ``models.sequence``)."""

from models import alexnet, char_rnn, densenet, googlenet, lenet, resnet, rnn, sequence, squeezenet, vgg, zfnet
from models._activations import ACTIVATIONS, make_activation
from models._base import ClassifierNet
from models._init import INIT_SCHEMES, init_weights
from models._norms import NORMS
from models._pretrained import ClassCountMismatch, load_pretrained, load_torchvision_weights, read_weights
from models._registry import create_model, get_model_builder, list_models, register_model
from models.lenet import LeNet5

__all__ = [
    "ACTIVATIONS",
    "INIT_SCHEMES",
    "NORMS",
    "ClassCountMismatch",
    "ClassifierNet",
    "LeNet5",
    "alexnet",
    "char_rnn",
    "create_model",
    "densenet",
    "get_model_builder",
    "googlenet",
    "init_weights",
    "lenet",
    "list_models",
    "load_pretrained",
    "load_torchvision_weights",
    "make_activation",
    "read_weights",
    "register_model",
    "resnet",
    "rnn",
    "sequence",
    "squeezenet",
    "vgg",
    "zfnet",
]
