import math

import pytest
import torch
from torch import nn

import models.nin  # noqa: F401
from conftest import count_parameters, record_output_shapes
from models import create_model
from models.summary import summarize

# The CIFAR-10 network, weights + biases of each layer (models/nin.py's table): conv k x k, then two 1x1 layers
MLPCONV1 = (3 * 192 * 5 * 5 + 192) + (192 * 160 + 160) + (160 * 96 + 96)  # 14,592 + 30,880 + 15,456 = 60,928
MLPCONV2 = (96 * 192 * 5 * 5 + 192) + 2 * (192 * 192 + 192)  # 460,992 + 2 * 37,056 = 535,104
MLPCONV3 = (192 * 192 * 3 * 3 + 192) + (192 * 192 + 192) + (192 * 10 + 10)  # 331,968 + 37,056 + 1,930 = 370,954
PARAMETERS = 966_986


def test_parameter_count_follows_the_table() -> None:
    assert (MLPCONV1, MLPCONV2, MLPCONV3) == (60_928, 535_104, 370_954)
    assert MLPCONV1 + MLPCONV2 + MLPCONV3 == PARAMETERS
    model = create_model("nin_cifar10")
    assert count_parameters(model) == PARAMETERS
    assert [count_parameters(model.features.get_submodule(f"mlpconv{i}")) for i in (1, 2)] == [MLPCONV1, MLPCONV2]
    # no fully-connected layer (Section 3.2): the class maps' 1x1 layer is the only one after mlpconv3's first two
    assert count_parameters(model.classifier) == 192 * 10 + 10
    # batch norm adds a scale and a shift for each map of every conv but the class maps'
    batch_norm = 2 * (192 + 160 + 96 + 3 * 192 + 2 * 192)
    assert count_parameters(create_model("nin_cifar10", norm="batch")) == PARAMETERS + batch_norm


def test_multiply_adds_of_a_32x32_image() -> None:
    # each conv: output positions x output maps x (input maps x kernel area); 32x32, then 16x16 and 8x8 after the pools
    macs = 32 * 32 * (192 * 3 * 25 + 160 * 192 + 96 * 160)
    macs += 16 * 16 * (192 * 96 * 25 + 2 * 192 * 192)
    macs += 8 * 8 * (192 * 192 * 9 + 192 * 192 + 10 * 192)
    summary = summarize(create_model("nin_cifar10"), (3, 32, 32))
    assert summary.parameters == PARAMETERS
    assert summary.macs == macs == 222_486_528


def test_output_of_each_block_on_32x32() -> None:
    model = create_model("nin_cifar10")
    blocks = ["mlpconv1", "pool1", "drop1", "mlpconv2", "pool2", "drop2", "mlpconv3", "classifier.conv3", "avgpool"]
    shapes = record_output_shapes(model, blocks)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert shapes == {
        "mlpconv1": (96, 32, 32),  # 5x5 conv padded to keep the size, then 1x1 layers to 160 and 96 maps
        "pool1": (96, 16, 16),  # 3x3/2, rounding up: 32 -> 16
        "drop1": (96, 16, 16),
        "mlpconv2": (192, 16, 16),
        "pool2": (192, 8, 8),
        "drop2": (192, 8, 8),
        "mlpconv3": (192, 8, 8),  # its conv and first 1x1 layer; the second is the classifier
        "classifier.conv3": (10, 8, 8),  # one map per class
        "avgpool": (10, 1, 1),
    }
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_the_scores_are_the_averages_of_the_class_maps() -> None:
    model = create_model("nin_cifar10").eval()
    maps = {}
    model.classifier.act3.register_forward_hook(lambda module, inputs, output: maps.__setitem__("last", output))
    with torch.no_grad():
        logits = model(torch.randn(3, 3, 32, 32))
    assert maps["last"].shape == (3, 10, 8, 8)
    torch.testing.assert_close(logits, maps["last"].mean(dim=(2, 3)))
    with torch.no_grad():  # any size: the average is global (Section 3.2), not an 8x8 window
        assert model(torch.randn(1, 3, 48, 40)).shape == (1, 10)


def test_dropout_only_in_training_mode() -> None:
    torch.manual_seed(0)
    model = create_model("nin_cifar10")
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]  # after pool1 and pool2
    without = create_model("nin_cifar10", dropout=0.0)
    without.load_state_dict(model.state_dict())
    x = torch.randn(4, 3, 32, 32)
    dropped = {}
    model.features.drop1.register_forward_hook(lambda module, inputs, output: dropped.__setitem__("out", output))
    model.features.pool1.register_forward_hook(lambda module, inputs, output: dropped.__setitem__("in", output))
    with torch.no_grad():
        model.train()
        first, second = model(x), model(x)
        kept = dropped["out"] != 0
        assert not torch.equal(first, second)  # a new mask each pass
        assert kept.float().mean().item() == pytest.approx(0.5 * (dropped["in"] != 0).float().mean().item(), abs=0.02)
        torch.testing.assert_close(dropped["out"][kept], 2 * dropped["in"][kept])  # kept units scaled by 1/(1-p)
        model.eval()
        without.eval()
        torch.testing.assert_close(model(x), without(x))  # at evaluation dropout is the identity
        torch.testing.assert_close(model(x), model(x))


def test_switches() -> None:
    model = create_model("nin_cifar10", activation="tanh", norm="batch")
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 9  # every layer's, the class maps' included
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    norms = [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 8 and "features.mlpconv3.bn2" in norms  # every conv but the class maps'
    assert list(model.features.mlpconv1) == [
        model.features.mlpconv1.get_submodule(n)
        for n in ("conv1", "bn1", "act1", "conv2", "bn2", "act2", "conv3", "bn3", "act3")
    ]
    with pytest.raises(ValueError, match="norm='group' is not available for NiN; accepted: none, batch"):
        create_model("nin_cifar10", norm="group")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        create_model("nin_cifar10", dropout=1.0)


def test_paper_init_is_he_normal_with_small_class_maps_and_zero_biases() -> None:
    model = create_model("nin_cifar10")
    conv = model.features.mlpconv2.conv1  # He normal, variance 2 / fan_out, fan_out 192 x 5 x 5
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (192 * 25)), rel=0.02)
    assert model.classifier.conv3.weight.std().item() == pytest.approx(0.01, rel=0.1)
    with torch.no_grad():  # the first loss is near chance's ln(10)
        loss = nn.functional.cross_entropy(model.eval()(torch.randn(64, 3, 32, 32)), torch.randint(0, 10, (64,)))
    assert loss.item() == pytest.approx(math.log(10), abs=0.1)
    assert all(torch.all(m.bias == 0) for m in model.modules() if isinstance(m, nn.Conv2d))
    assert create_model("nin_cifar10", init="torch").features.mlpconv1.conv1.bias.abs().sum() > 0
    xavier = create_model("nin_cifar10", init="xavier_normal").features.mlpconv2.conv2.weight
    assert xavier.std().item() == pytest.approx(math.sqrt(2 / (192 + 192)), rel=0.05)


def test_other_classes_and_channels() -> None:
    model = create_model("nin_cifar10", num_classes=100, in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 100)
    assert count_parameters(model) == PARAMETERS - 2 * 192 * 25 - (192 * 10 + 10) + (192 * 100 + 100)
