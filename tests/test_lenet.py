import pytest
import torch

from conftest import count_parameters
from models import create_model


def test_parameter_count_matches_the_1998_layout() -> None:
    # C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + output 850
    assert count_parameters(create_model("lenet5")) == 61_706


def test_backward_reaches_every_parameter() -> None:
    model = create_model("lenet5", activation="relu", pool="max")
    model(torch.randn(2, 1, 32, 32)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (2, 3, 32, 32), (1, 32, 32)])
def test_wrong_input_shape_names_what_is_expected(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"LeNet-5 takes images of shape \(N, 1, 32, 32\).*data.image_size=32"):
        create_model("lenet5")(torch.randn(*shape))


def test_unknown_options_name_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="unknown activation 'gelu'; accepted: sigmoid, tanh, scaled_tanh, relu, "):
        create_model("lenet5", activation="gelu")
    with pytest.raises(ValueError, match="unknown pool 'min'; accepted: avg, max"):
        create_model("lenet5", pool="min")


def test_paper_form_has_the_papers_60000_trainable_parameters() -> None:
    model = create_model("lenet5_paper")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 60_000
    # C3's partial table (Table I): 6x(3x25+1) + 6x(4x25+1) + 3x(4x25+1) + (6x25+1)
    assert sum(p.numel() for p in model.features.c3.parameters()) == 1_516
    assert sum(p.numel() for p in model.features.s2.parameters()) == 12
    assert not list(model.classifier.parameters())  # the RBF prototypes are fixed


def test_paper_form_shapes_and_interface() -> None:
    model = create_model("lenet5_paper")
    x = torch.randn(2, 1, 32, 32)
    assert model.features[:5](x).shape == (2, 16, 10, 10)  # C1, S2, C3
    logits = model(x)
    assert logits.shape == (2, 10) and (logits <= 0).all()  # minus squared distances
    model(x).sum().backward()
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    with pytest.raises(ValueError, match="LeNet-5 takes images of shape"):
        model(torch.randn(2, 1, 28, 28))


def test_scaled_tanh_maps_one_to_one() -> None:
    from models.lenet import ScaledTanh

    assert ScaledTanh()(torch.tensor([1.0, -1.0])).tolist() == pytest.approx([1.0, -1.0], abs=1e-4)
