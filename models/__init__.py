"""Classic architectures as plain ``nn.Module``s, built by name through a registry."""

from models import lenet
from models._registry import create_model, get_model_builder, list_models, register_model
from models.lenet import LeNet5

__all__ = ["LeNet5", "create_model", "get_model_builder", "lenet", "list_models", "register_model"]
