"""LightningDataModules: images for the CNN zoo, sequences for the recurrent networks."""

from data.base import ClassificationDataModule
from data.digits import DigitsDataModule
from data.fake import FakeDataModule
from data.sequences import AddingProblemDataModule, SequentialDigitsDataModule
from data.text import CharTextDataModule  # also registers the text_vocab config resolvers

__all__ = [
    "AddingProblemDataModule",
    "CharTextDataModule",
    "ClassificationDataModule",
    "DigitsDataModule",
    "FakeDataModule",
    "SequentialDigitsDataModule",
]
