"""The activation registry (models.make_activation): every name builds, and the maxout modules compute Goodfellow et
al.'s maxout, start as a ReLU and have correct gradients."""

import pytest
import torch
from torch import nn

from models import ACTIVATIONS, ChannelMaxout, Maxout, ScaledTanh, make_activation

EXPECTED_TYPES = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "scaled_tanh": ScaledTanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "prelu": nn.PReLU,
    "rrelu": nn.RReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "softplus": nn.Softplus,
    "relu6": nn.ReLU6,
    "maxout": ChannelMaxout,
}


def test_the_registry_has_the_issue_s_activations() -> None:
    assert set(ACTIVATIONS) == set(EXPECTED_TYPES)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(4, 6), (4, 6, 5, 5)])
def test_every_activation_keeps_the_shape_and_passes_gradients(name: str, shape: tuple[int, ...]) -> None:
    activation = make_activation(name, channels=6)
    assert type(activation) is EXPECTED_TYPES[name]
    x = torch.randn(*shape, requires_grad=True)
    out = activation(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_each_call_builds_a_fresh_module_with_parameters_per_channel() -> None:
    first, second = make_activation("prelu", 8), make_activation("prelu", 8)
    assert first is not second and first.weight.shape == (8,) and (first.weight == 0.25).all()
    assert make_activation("maxout", 8).slope.shape == (8, 2)
    assert not list(make_activation("elu", 8).parameters())


def test_inplace_is_passed_to_the_modules_that_take_it() -> None:
    for name in ("relu", "leaky_relu", "rrelu", "elu", "selu", "relu6"):
        assert make_activation(name, inplace=True).inplace and not make_activation(name).inplace
    x = torch.randn(3, 4)
    expected = torch.relu(x)
    make_activation("relu", inplace=True)(x)
    assert torch.equal(x, expected)


def test_unknown_name_lists_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="unknown activation 'gelu'; accepted: sigmoid, tanh, scaled_tanh, relu, "):
        make_activation("gelu")


def test_values_of_the_fixed_activations() -> None:
    x = torch.tensor([-2.0, -0.5, 0.0, 1.0, 7.0])
    assert make_activation("scaled_tanh")(torch.tensor([1.0, -1.0])).tolist() == pytest.approx([1, -1], abs=1e-4)
    assert make_activation("leaky_relu")(x).tolist() == pytest.approx([-0.02, -0.005, 0.0, 1.0, 7.0])
    assert make_activation("relu6")(x).tolist() == [0.0, 0.0, 0.0, 1.0, 6.0]
    rrelu = make_activation("rrelu").eval()  # at eval the mean slope (1/8 + 1/3) / 2
    assert rrelu(x)[0].item() == pytest.approx(-2 * (1 / 8 + 1 / 3) / 2)
    train_slopes = make_activation("rrelu").train()(-torch.ones(10_000)).neg()
    assert train_slopes.min() >= 1 / 8 and train_slopes.max() <= 1 / 3 and train_slopes.std() > 0.05


def test_channel_maxout_starts_as_a_relu_and_with_more_pieces_as_a_smoothed_relu() -> None:
    z = torch.linspace(-3, 3, 61)
    torch.testing.assert_close(ChannelMaxout(pieces=2)(z.view(1, -1)), torch.relu(z).view(1, -1))
    # 3 pieces: 0 below -1, (z + 1) / 2 on [-1, 1], z above 1; each piece is the maximum somewhere
    smooth = torch.where(z < -1, 0.0, torch.where(z > 1, z, (z + 1) / 2))
    torch.testing.assert_close(ChannelMaxout(pieces=3)(z.view(1, -1)), smooth.view(1, -1))
    four = ChannelMaxout(channels=1, pieces=4)
    winners = (z.view(-1, 1) * four.slope + four.bias).argmax(dim=1)
    assert set(winners.tolist()) == {0, 1, 2, 3}


def test_channel_maxout_learns_one_function_per_channel() -> None:
    maxout = ChannelMaxout(channels=3, pieces=2)
    with torch.no_grad():
        maxout.slope.copy_(torch.tensor([[0.0, 1.0], [-1.0, 1.0], [0.5, 2.0]]))
        maxout.bias.copy_(torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, -1.0]]))
    z = torch.randn(2, 3, 4, 4)
    expected = torch.stack([torch.relu(z[:, 0]), z[:, 1].abs(), torch.maximum(0.5 * z[:, 2] + 1, 2 * z[:, 2] - 1)], 1)
    torch.testing.assert_close(maxout(z), expected)
    torch.testing.assert_close(maxout(z[:, :, 0, 0]), expected[:, :, 0, 0])  # vectors (N, C) too


def test_channel_maxout_is_goodfellow_maxout_with_tied_weights() -> None:
    # h_i = max_j (a_ij z_i + b_ij), z_i = w_i x + c_i, equals Maxout with W_ij = a_ij w_i and b_ij = a_ij c_i + b_ij
    torch.manual_seed(0)
    linear, activation = nn.Linear(5, 3), ChannelMaxout(channels=3, pieces=4)
    nn.init.normal_(activation.slope)
    nn.init.normal_(activation.bias)
    maxout = Maxout(5, 3, pieces=4)
    with torch.no_grad():
        maxout.linear.weight.copy_((activation.slope.unsqueeze(-1) * linear.weight.unsqueeze(1)).reshape(12, 5))
        maxout.linear.bias.copy_((activation.slope * linear.bias.unsqueeze(1) + activation.bias).reshape(12))
    x = torch.randn(7, 5)
    torch.testing.assert_close(maxout(x), activation(linear(x)))


def test_maxout_layer_takes_the_max_over_each_unit_s_pieces() -> None:
    maxout = Maxout(in_features=6, out_features=4, pieces=3)
    assert maxout.linear.out_features == 12
    x = torch.randn(5, 6)
    z = maxout.linear(x)
    expected = torch.stack([z[:, 3 * i : 3 * i + 3].max(dim=1).values for i in range(4)], dim=1)
    torch.testing.assert_close(maxout(x), expected)


def test_maxout_gradients_pass_gradcheck_in_double_precision() -> None:
    torch.manual_seed(0)
    channel_maxout = ChannelMaxout(channels=3, pieces=3).double()
    nn.init.normal_(channel_maxout.slope)  # away from the starting ReLU, so every piece wins somewhere
    nn.init.normal_(channel_maxout.bias)
    z = torch.randn(4, 3, 2, 2, dtype=torch.double, requires_grad=True)

    def channel(z: torch.Tensor, slope: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(channel_maxout, {"slope": slope, "bias": bias}, (z,))

    params = [channel_maxout.slope.detach().requires_grad_(), channel_maxout.bias.detach().requires_grad_()]
    assert torch.autograd.gradcheck(channel, (z, *params))

    maxout = Maxout(4, 3, pieces=2).double()
    x = torch.randn(5, 4, dtype=torch.double, requires_grad=True)

    def layer(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(maxout, {"linear.weight": weight, "linear.bias": bias}, (x,))

    params = [maxout.linear.weight.detach().requires_grad_(), maxout.linear.bias.detach().requires_grad_()]
    assert torch.autograd.gradcheck(layer, (x, *params))


def test_maxout_needs_two_pieces() -> None:
    with pytest.raises(ValueError, match="maxout needs at least 2 pieces, got 1"):
        ChannelMaxout(pieces=1)
