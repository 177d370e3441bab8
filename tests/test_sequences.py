"""Sequence data (the digits as sequences, the adding problem) and the regression module."""

import functools

import pytest
import torch
from torch import nn

from conftest import model_inputs
from data import AddingProblemDataModule, SequentialDigitsDataModule
from data.sequences import ADDING_BASELINE_MSE
from training import Regressor


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize(("order", "input_size", "shape"), [("rows", 8, (8, 8)), ("pixels", 1, (64, 1))])
def test_digits_read_as_sequences(order: str, input_size: int, shape: tuple[int, int], fast_path: bool) -> None:
    datamodule = SequentialDigitsDataModule(
        order=order, input_size=input_size, batch_size=4, fast_path=fast_path, num_workers=0
    )
    datamodule.setup()
    sequences, labels = model_inputs(datamodule, "train")
    assert sequences.shape == (1257, *shape) and datamodule.input_shape == shape
    assert labels.shape == (1257,) and datamodule.num_classes == 10
    image = SequentialDigitsDataModule(order="rows", input_size=8, fast_path=fast_path, num_workers=0)
    image.setup()
    rows = model_inputs(image, "test")[0]
    pixels = SequentialDigitsDataModule(order="pixels", input_size=1)
    pixels.setup()
    assert torch.equal(model_inputs(pixels, "test")[0].reshape(-1, 8, 8), rows)  # the same images, read two ways


def test_sequence_digits_refuse_an_input_size_that_does_not_fit_the_order() -> None:
    with pytest.raises(ValueError, match=r"input_size=8 does not fit order=pixels.*set data.input_size=1"):
        SequentialDigitsDataModule(order="pixels", input_size=8)
    with pytest.raises(ValueError, match="unknown order 'columns'; accepted: rows, pixels"):
        SequentialDigitsDataModule(order="columns")
    with pytest.raises(ValueError, match="grey images without padding: in_channels must be 1 and pad 0, got 3 and 0"):
        SequentialDigitsDataModule(in_channels=3)


def test_sequence_digits_pass_the_digits_settings_on() -> None:
    datamodule = SequentialDigitsDataModule(normalize="none", val_fraction=0.2, split_seed=1, num_workers=0)
    datamodule.setup()
    sequences = model_inputs(datamodule, "val")[0]
    assert sequences.shape == (360, 8, 8) and sequences.min() >= 0 and sequences.max() <= 1


def test_adding_problem_sequences_and_targets() -> None:
    datamodule = AddingProblemDataModule(seq_len=20, train_size=500, val_size=10, test_size=10, batch_size=8)
    datamodule.setup()
    inputs, targets = datamodule.train_set.tensors
    assert inputs.shape == (500, 20, 2) and datamodule.input_shape == (20, 2) and datamodule.output_size == 1
    markers = inputs[..., 1]
    assert torch.equal(markers.sum(dim=1), torch.full((500,), 2.0))
    assert (markers[:, :10].sum(dim=1) == 1).all() and (markers[:, 10:].sum(dim=1) == 1).all()  # one per half
    assert torch.allclose((inputs[..., 0] * markers).sum(dim=1), targets)
    # the trivial answer 1 scores Var(U1 + U2) = 1/6
    assert ((targets - 1) ** 2).mean().item() == pytest.approx(ADDING_BASELINE_MSE, abs=0.03)


def test_adding_problem_repeats_with_its_seed() -> None:
    first, second = AddingProblemDataModule(seq_len=5, train_size=3), AddingProblemDataModule(seq_len=5, train_size=3)
    first.setup()
    second.setup()
    assert torch.equal(first.train_set.tensors[0], second.train_set.tensors[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seq_len": 1}, "seq_len must be an integer of at least 2"),
        ({"batch_size": 0}, "batch_size must be an integer of at least 1"),
        ({"input_size": 3}, "the adding problem feeds 2 values per step"),
    ],
)
def test_adding_problem_refuses_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AddingProblemDataModule(**kwargs)


def test_regressor_loss_is_the_mean_squared_error() -> None:
    net = nn.Linear(3, 1)
    module = Regressor(net, functools.partial(torch.optim.SGD, lr=0.1))
    inputs, targets = torch.randn(6, 3), torch.randn(6)
    loss = module.criterion(*module._predict((inputs, targets)))
    assert loss.item() == pytest.approx(((net(inputs).squeeze(-1) - targets) ** 2).mean().item())


@pytest.mark.parametrize("experiment", ["lstm_seq_digits", "rnn_adding", "lstm_adding", "gru_adding"])
def test_sequence_experiments_train_through_the_train_entry_point(train_config, experiment: str) -> None:
    from training.tasks import train

    summary = train(train_config(f"experiment={experiment}", "debug=fdr", "data.batch_size=4"))
    assert torch.isfinite(torch.tensor(summary["test/loss"]))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("impl", ["scratch", "fused"])
def test_sequence_model_reads_out_the_last_hidden_state(cell: str, impl: str) -> None:
    from models.sequence import SequenceModel

    torch.manual_seed(0)
    model = SequenceModel(cell=cell, input_size=3, num_outputs=4, hidden_size=5, bidirectional=True, impl=impl)
    sequences = torch.randn(2, 6, 3)
    _, state = model.rnn(sequences)
    h_n = state[0] if cell == "lstm" else state
    expected = model.head(torch.cat([h_n[-2], h_n[-1]], dim=-1))
    assert torch.allclose(model(sequences), expected)
    with pytest.raises(ValueError, match=r"takes sequences of shape \(batch, steps, 3\), got \(2, 6, 4\)"):
        model(torch.randn(2, 6, 4))
