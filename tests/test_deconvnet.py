"""training/deconvnet.py: Zeiler & Fergus's tools."""

import pytest
from torch import nn

from training.deconvnet import find_layer


def test_find_layer_by_dotted_name_and_refuses_others_listing_them() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.ReLU(), nn.MaxPool2d(2)))
    assert find_layer(model, "1.1") is model[1][1]
    with pytest.raises(ValueError, match=r"no layer '1\.2'; did you mean 1\.1.*accepted: 0, 1, 1\.0, 1\.1$") as error:
        find_layer(model, "1.2")
    assert "\n" not in str(error.value)
