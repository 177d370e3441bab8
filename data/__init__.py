"""LightningDataModules for image classification."""

from data.base import ClassificationDataModule
from data.digits import DigitsDataModule

__all__ = ["ClassificationDataModule", "DigitsDataModule"]
