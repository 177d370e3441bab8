"""LightningDataModules: images for the CNN zoo, sequences for the recurrent networks."""

from data.attributes import DigitsAttributesDataModule
from data.base import ClassificationDataModule
from data.digits import DigitsDataModule
from data.fake import FakeDataModule
from data.imagefolder import ImageFolderDataModule
from data.sequences import AddingProblemDataModule, SequentialDigitsDataModule, SequentialMNISTDataModule
from data.text import CharTextDataModule  # also registers the text_vocab config resolvers
from data.torchvision_sets import CIFAR10DataModule, CIFAR100DataModule, FashionMNISTDataModule, MNISTDataModule

__all__ = [
    "AddingProblemDataModule",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "CharTextDataModule",
    "ClassificationDataModule",
    "DigitsAttributesDataModule",
    "DigitsDataModule",
    "FakeDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "SequentialDigitsDataModule",
    "SequentialMNISTDataModule",
]
