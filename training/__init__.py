"""Lightning modules, the train/evaluate jobs and their command-line front."""

from training.base import TrainingModule
from training.classifier import Classifier
from training.config import UserError, instantiate
from training.ema import EMA
from training.language_model import LanguageModel
from training.multilabel import MultiLabelClassifier
from training.regression import Regressor

__all__ = [
    "EMA",
    "Classifier",
    "LanguageModel",
    "MultiLabelClassifier",
    "Regressor",
    "TrainingModule",
    "UserError",
    "instantiate",
]
