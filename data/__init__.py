"""LightningDataModules: images for the CNN zoo, sequences for the recurrent networks."""

from data.base import ClassificationDataModule
from data.digits import DigitsDataModule
from data.fake import FakeDataModule
from data.sequences import AddingProblemDataModule, SequentialDigitsDataModule

__all__ = [
    "AddingProblemDataModule",
    "ClassificationDataModule",
    "DigitsDataModule",
    "FakeDataModule",
    "SequentialDigitsDataModule",
]
