"""Lightning modules, the train/evaluate jobs and their command-line front."""

from training.classifier import ImageClassifier
from training.config import UserError, instantiate

__all__ = ["ImageClassifier", "UserError", "instantiate"]
