"""The bundled digits with a multi-hot target of attributes per image, for multi-label classification.

Each digit carries four yes/no attributes, any number of which can hold at once:

* ``even``: 0, 2, 4, 6, 8;
* ``greater_than_4``: 5, 6, 7, 8, 9;
* ``closed_loop``: 0, 6, 8, 9, the digits written with an enclosed region. 4 is counted open, the way it is
  usually handwritten (a printed 4 is closed), and so is a 2 written with a loop;
* ``prime``: 2, 3, 5, 7.

The attributes are a function of the digit, so 5 and 7 (odd, above 4, open, prime) share a target, as do 6
and 8. The images, split, normalisation and augmentation are those of ``data.digits.DigitsDataModule``.
"""

from __future__ import annotations

from typing import Any

import torch

from data.digits import DigitsDataModule

ATTRIBUTES: dict[str, tuple[int, ...]] = {
    "even": (0, 2, 4, 6, 8),
    "greater_than_4": (5, 6, 7, 8, 9),
    "closed_loop": (0, 6, 8, 9),
    "prime": (2, 3, 5, 7),
}


def attribute_table() -> torch.Tensor:
    """(10, number of attributes) float tensor: row ``d`` is the multi-hot target of digit ``d``."""
    table = torch.zeros(10, len(ATTRIBUTES))
    for column, digits in enumerate(ATTRIBUTES.values()):
        table[list(digits), column] = 1.0
    return table


class DigitsAttributesDataModule(DigitsDataModule):
    """The bundled digits whose targets are float multi-hot vectors over ``attribute_names`` (for
    ``BCEWithLogitsLoss``); ``num_classes`` is the number of attributes, one model output each."""

    targets = "attributes"

    def __init__(self, num_classes: int = len(ATTRIBUTES), **kwargs: Any) -> None:
        super().__init__(num_classes=10, **kwargs)
        self.declared_num_classes = num_classes
        self._set_class_names(list(ATTRIBUTES))

    @property
    def attribute_names(self) -> list[str]:
        return self.class_names

    def _read_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        table = attribute_table()
        return {split: (images, table[digits]) for split, (images, digits) in super()._read_splits().items()}
