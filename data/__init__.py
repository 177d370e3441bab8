"""LightningDataModules for image classification."""

from data.base import ClassificationDataModule
from data.digits import DigitsDataModule
from data.fake import FakeDataModule

__all__ = ["ClassificationDataModule", "DigitsDataModule", "FakeDataModule"]
