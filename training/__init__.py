"""Lightning modules, the train/evaluate jobs and their command-line front."""

from training.base import TrainingModule
from training.classifier import Classifier
from training.config import UserError, instantiate
from training.ema import EMA
from training.inference import LoadedModel, load_model
from training.language_model import LanguageModel
from training.multilabel import MultiLabelClassifier
from training.regression import Regressor

__all__ = [
    "EMA",
    "Classifier",
    "LanguageModel",
    "LoadedModel",
    "MultiLabelClassifier",
    "Regressor",
    "TrainingModule",
    "UserError",
    "instantiate",
    "load_model",
]
