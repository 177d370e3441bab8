"""Inception-v3 (Szegedy et al. 2016) as released and in torchvision: counts, multiply-adds, torchvision's weights
and outputs, the auxiliary head in training, and the options."""

import functools

import pytest
import torch
import torchvision
from torch import nn

from conftest import assert_same_outputs, build_on_meta, check_model_config, count_parameters, record_output_shapes
from models import create_model, load_torchvision_weights
from models.inception_v3 import InceptionV3
from models.summary import summarize
from training import Classifier
from training.config import UserError
from training.tasks import build

META = torchvision.models.Inception_V3_Weights.DEFAULT.meta


def torchvision_inception(**kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.inception_v3(weights=None, init_weights=True, **kwargs)


def test_parameter_counts_and_multiply_adds_equal_torchvisions() -> None:
    assert (META["num_params"], META["_ops"]) == (27_161_264, 5.713)
    summary = summarize(build_on_meta("inception_v3"), (3, 299, 299))
    assert summary.parameters == 27_161_264
    assert summary.macs / 1e9 == pytest.approx(5.713, abs=0.0005)
    # the aux head: 1x1 conv 768 -> 128 and its BN, 5x5 conv 128 -> 768 and its BN, linear 768 -> 1000
    aux = (768 * 128 + 2 * 128) + (25 * 128 * 768 + 2 * 768) + (768 * 1000 + 1000)
    assert aux == 3_326_696
    assert count_parameters(build_on_meta("inception_v3", aux_logits=False)) == 27_161_264 - aux == 23_834_568


def test_grid_sizes_follow_table_1() -> None:
    # Table 1's inputs of the 3 x Figure 5, 5 x Figure 6 and 2 x Figure 7 rows and of the 8x8 pool, at 299x299
    model = build_on_meta("inception_v3")
    layers = ["Conv2d_2b_3x3", "maxpool1", "maxpool2", "Mixed_5d", "Mixed_6a", "Mixed_6e", "Mixed_7a", "Mixed_7c"]
    shapes = record_output_shapes(model, [*layers, "avgpool", "AuxLogits"])
    logits, aux = model(torch.empty(2, 3, 299, 299, device="meta"))  # training mode: the aux head runs
    assert logits.shape == aux.shape == (2, 1000)
    assert shapes == {
        "Conv2d_2b_3x3": (64, 147, 147),
        "maxpool1": (64, 73, 73),
        "maxpool2": (192, 35, 35),
        "Mixed_5d": (288, 35, 35),  # 35x35x288
        "Mixed_6a": (768, 17, 17),  # 17x17x768
        "Mixed_6e": (768, 17, 17),
        "Mixed_7a": (1280, 8, 8),  # 8x8x1280
        "Mixed_7c": (2048, 8, 8),  # 8x8x2048
        "avgpool": (2048, 1, 1),  # 1x1x2048
        "AuxLogits": (1000,),
    }


def test_paper_init_is_torchvisions() -> None:
    theirs = torchvision_inception().state_dict()
    torch.manual_seed(0)
    ours = create_model("inception_v3").state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(value, theirs[key]) for key, value in ours.items())


def test_torchvision_weights_give_the_same_outputs() -> None:
    theirs = torchvision_inception(num_classes=10)
    ours = load_torchvision_weights(create_model("inception_v3", num_classes=10), theirs.state_dict())
    assert_same_outputs(ours.AuxLogits, theirs.AuxLogits, torch.randn(2, 768, 17, 17))  # on Mixed_6e's map
    # torchvision's pretrained weights carry the aux head; its loader drops it for aux_logits=False, as ours does:
    # then the whole network runs at the least input, 75x75
    without_aux = create_model("inception_v3", aux_logits=False, num_classes=10, pretrained=theirs.state_dict())
    assert without_aux.AuxLogits is None
    assert_same_outputs(without_aux, theirs, torch.randn(2, 3, 75, 75))


def test_torchvision_transform_input() -> None:
    theirs = torchvision_inception(aux_logits=False, transform_input=True)
    ours = create_model("inception_v3", aux_logits=False, transform_input=True)
    assert_same_outputs(load_torchvision_weights(ours, theirs.state_dict()), theirs, torch.randn(1, 3, 75, 75))


def test_weights_without_the_aux_head_do_not_fit_a_model_with_it() -> None:
    with torch.device("meta"):
        theirs = torchvision.models.inception_v3(weights=None, init_weights=False, aux_logits=False)
    with pytest.raises(ValueError, match=r"nothing was loaded. missing \(14\): AuxLogits.conv0.conv.weight"):
        load_torchvision_weights(build_on_meta("inception_v3"), theirs.state_dict())


@pytest.mark.slow
def test_training_returns_the_aux_logits_like_torchvision_and_the_loss_adds_them() -> None:
    theirs = torchvision_inception(num_classes=5)
    ours = load_torchvision_weights(create_model("inception_v3", num_classes=5), theirs.state_dict())
    x = torch.randn(2, 3, 299, 299)  # the least the aux head takes
    torch.manual_seed(1)
    logits, aux = ours.train()(x)
    torch.manual_seed(1)
    expected = theirs.train()(x)
    torch.testing.assert_close((logits, aux), (expected.logits, expected.aux_logits), atol=1e-5, rtol=1e-5)
    module = Classifier(ours, functools.partial(torch.optim.SGD, lr=0.1), num_classes=5, aux_loss_weight=0.4)
    targets = torch.tensor([1, 3])
    torch.manual_seed(1)
    loss, scores = module._shared_step((x, targets))
    ce = nn.functional.cross_entropy
    torch.testing.assert_close(loss, ce(logits, targets) + 0.4 * ce(aux, targets), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores, logits)
    loss.backward()
    assert all(p.grad is not None for p in ours.parameters())


def test_min_input_size_is_299_with_the_aux_head_else_75(train_config) -> None:
    model = create_model("inception_v3", num_classes=3).eval()  # the aux head runs in training only, but ...
    assert model.min_input_size == 299  # ... a run that evaluates at a size must train at it too
    with pytest.raises(ValueError, match=r"at least 299x299 .* got 298x298; .*aux_logits=False\) it takes 75 and up"):
        model(torch.randn(2, 3, 298, 298))
    with pytest.raises(UserError, match=r"cannot take the data's 3x224x224 images: InceptionV3 needs .* 299x299"):
        build(train_config("model=inception_v3", "data=fake", "data.image_size=224"))
    without_aux = create_model("inception_v3", num_classes=3, aux_logits=False)
    assert without_aux.min_input_size == 75
    assert without_aux(torch.randn(2, 3, 75, 75)).shape == (2, 3)
    with pytest.raises(ValueError, match="needs images of at least 75x75 pixels"):
        without_aux(torch.randn(2, 3, 74, 74))
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
        without_aux.forward_features(torch.randn(2, 3, 74, 74))  # the check is not stricter than needed


def test_classifier_interface() -> None:
    model = build_on_meta("inception_v3").eval()
    assert model.forward_features(torch.empty(1, 3, 299, 299, device="meta")).shape == (1, 2048, 8, 8)
    assert model.get_classifier() is model.fc
    assert model.get_classifiers() == [model.fc, model.AuxLogits.fc]
    model.reset_classifier(5)
    assert model.num_classes == model.fc.out_features == model.AuxLogits.fc.out_features == 5
    without_aux = build_on_meta("inception_v3", aux_logits=False)
    without_aux.reset_classifier(5)
    assert without_aux.get_classifiers() == [without_aux.fc]


@pytest.mark.parametrize(("norm", "kind"), [("batch", nn.BatchNorm2d), ("group", nn.GroupNorm), ("none", None)])
def test_norm_and_activation_go_after_every_conv(norm: str, kind: type | None) -> None:
    model = build_on_meta("inception_v3", norm=norm, activation="elu")
    convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    norms = [module for module in model.modules() if kind is not None and isinstance(module, kind)]
    assert len(norms) == (len(convs) if kind else 0) and len(convs) == 96
    assert all((conv.bias is None) == (norm != "none") for conv in convs)
    assert sum(isinstance(module, nn.ELU) for module in model.modules()) == len(convs)
    assert not any(isinstance(module, nn.ReLU) for module in model.modules())


def test_other_init_and_one_input_channel() -> None:
    model = create_model("inception_v3", in_channels=1, num_classes=4, aux_logits=False, init="kaiming_normal")
    assert model(torch.randn(2, 1, 75, 75)).isfinite().all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"aux_logits": "yes"}, r"aux_logits must be True or False, got 'yes'"),
        ({"transform_input": 1}, r"transform_input must be True or False, got 1"),
        ({"transform_input": True, "in_channels": 1}, r"needs in_channels=3, got 1"),
        ({"dropout": 1.5}, r"dropout probability has to be between 0 and 1, but got 1.5"),
        ({"norm": "local_response"}, r"norm='local_response' is not available for InceptionV3; accepted: batch, group"),
        ({"init": "he"}, r"unknown init 'he'; accepted: paper, torch"),
    ],
)
def test_bad_options_name_the_accepted_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_on_meta("inception_v3", **kwargs)


def test_config_lists_every_option_with_its_default() -> None:
    check_model_config("inception_v3")
    assert isinstance(build_on_meta("inception_v3"), InceptionV3)
