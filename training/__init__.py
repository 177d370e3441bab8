"""Lightning modules, the train/evaluate jobs and their command-line front."""

from training.base import TrainingModule
from training.classifier import Classifier
from training.config import UserError, instantiate
from training.language_model import LanguageModel
from training.regression import Regressor

__all__ = ["Classifier", "LanguageModel", "Regressor", "TrainingModule", "UserError", "instantiate"]
