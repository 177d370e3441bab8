import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from models.rnn import GRU, LSTM, RNN, gru_cell, lstm_cell, rnn_cell

SEQ_LEN, BATCH, INPUT, HIDDEN = 5, 3, 4, 6

# name: (ours, torch.nn's, extra constructor options)
KINDS = {
    "rnn_tanh": (RNN, nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (RNN, nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (LSTM, nn.LSTM, {}),
    "gru": (GRU, nn.GRU, {}),
}
CONFIGS = list(itertools.product(KINDS, (1, 2), (False, True), (False, True)))  # kind, layers, bidirectional, b_first
CONFIG_IDS = [f"{kind}-l{layers}-{'bi' if bi else 'uni'}-{'bf' if bf else 'sf'}" for kind, layers, bi, bf in CONFIGS]


def make_pair(kind: str, dtype: torch.dtype = torch.float32, **options) -> tuple[nn.Module, nn.Module]:
    """Ours with the weights of a seeded torch.nn module, and a fresh torch.nn module with ours loaded back."""
    ours_class, torch_class, extra = KINDS[kind]
    options = {"input_size": INPUT, "hidden_size": HIDDEN, **extra, **options}
    torch.manual_seed(0)
    reference = torch_class(**options)
    ours = ours_class(**options)
    ours.load_state_dict(reference.state_dict(), strict=True)
    theirs = torch_class(**options)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(reference.state_dict())
    return ours.to(dtype), theirs.to(dtype)


def initial_state(kind: str, num_states: int, batch: int, dtype: torch.dtype) -> torch.Tensor | tuple:
    h_0 = torch.randn(num_states, batch, HIDDEN, dtype=dtype)
    return (h_0, torch.randn_like(h_0)) if kind == "lstm" else h_0


def flatten(result: tuple) -> list[torch.Tensor]:
    """[output, h_n] or [output, h_n, c_n], the output unpacked to a tensor."""
    output, state = result
    if isinstance(output, PackedSequence):
        output = output.data
    return [output, *state] if isinstance(state, tuple) else [output, state]


def assert_results_close(ours: tuple, theirs: tuple, tolerance: float) -> None:
    for actual, expected in zip(flatten(ours), flatten(theirs), strict=True):
        torch.testing.assert_close(actual, expected, atol=tolerance, rtol=0)


def run_both(kind: str, layers: int, bidirectional: bool, batch_first: bool, dtype: torch.dtype):
    ours, theirs = make_pair(kind, dtype, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    torch.manual_seed(1)
    shape = (BATCH, SEQ_LEN, INPUT) if batch_first else (SEQ_LEN, BATCH, INPUT)
    x = torch.randn(shape, dtype=dtype)
    hx = initial_state(kind, layers * (2 if bidirectional else 1), BATCH, dtype) if layers == 2 else None
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    return ours, theirs, x_ours, x_theirs, ours(x_ours, hx), theirs(x_theirs, hx)


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize(("kind", "layers", "bidirectional", "batch_first"), CONFIGS, ids=CONFIG_IDS)
def test_matches_torch_nn(
    kind: str, layers: int, bidirectional: bool, batch_first: bool, dtype: torch.dtype, tolerance: float
) -> None:
    *_, result_ours, result_theirs = run_both(kind, layers, bidirectional, batch_first, dtype)
    output, _ = result_ours
    directions = 2 if bidirectional else 1
    assert output.shape == ((BATCH, SEQ_LEN) if batch_first else (SEQ_LEN, BATCH)) + (directions * HIDDEN,)
    assert_results_close(result_ours, result_theirs, tolerance)


@pytest.mark.parametrize(("kind", "layers", "bidirectional", "batch_first"), CONFIGS, ids=CONFIG_IDS)
def test_gradients_match_torch_nn(kind: str, layers: int, bidirectional: bool, batch_first: bool) -> None:
    ours, theirs, x_ours, x_theirs, result_ours, result_theirs = run_both(
        kind, layers, bidirectional, batch_first, torch.float64
    )
    for result in (result_ours, result_theirs):
        sum(tensor.pow(2).sum() for tensor in flatten(result)).backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, atol=1e-10, rtol=0)
    for (name, ours_parameter), (_, their_parameter) in zip(
        ours.named_parameters(), theirs.named_parameters(), strict=True
    ):
        torch.testing.assert_close(ours_parameter.grad, their_parameter.grad, atol=1e-10, rtol=0, msg=name)


def test_same_seed_same_initialisation() -> None:
    for ours_class, torch_class, _ in KINDS.values():
        torch.manual_seed(3)
        ours = ours_class(INPUT, HIDDEN, num_layers=2, bidirectional=True)
        torch.manual_seed(3)
        theirs = torch_class(INPUT, HIDDEN, num_layers=2, bidirectional=True)
        for (name, a), (their_name, b) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
            assert name == their_name and a.shape == b.shape and torch.equal(a, b)
        bound = 1 / HIDDEN**0.5
        assert all(p.abs().max() <= bound for p in ours.parameters())


@pytest.mark.parametrize("kind", list(KINDS))
def test_bias_false_and_unbatched_input_match_torch_nn(kind: str) -> None:
    ours, theirs = make_pair(kind, torch.float64, num_layers=2, bidirectional=True, bias=False)
    assert not [name for name, _ in ours.named_parameters() if name.startswith("bias")]
    x = torch.randn(SEQ_LEN, INPUT, dtype=torch.float64)
    assert_results_close(ours(x), theirs(x), 1e-10)
    hx = initial_state(kind, 4, 1, torch.float64)
    hx = tuple(state[:, 0] for state in hx) if kind == "lstm" else hx[:, 0]  # unbatched: (layers * 2, hidden)
    output, _ = ours(x, hx)
    assert output.shape == (SEQ_LEN, 2 * HIDDEN)
    assert_results_close(ours(x, hx), theirs(x, hx), 1e-10)


def packed_batch(lengths: list[int], enforce_sorted: bool, dtype: torch.dtype) -> PackedSequence:
    padded = torch.randn(max(lengths), len(lengths), INPUT, dtype=dtype)
    return pack_padded_sequence(padded, torch.tensor(lengths), enforce_sorted=enforce_sorted)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("lengths", [[5, 3, 2], [3, 5, 2]], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_packed_sequences_match_torch_nn(kind: str, lengths: list[int], bidirectional: bool) -> None:
    ours, theirs = make_pair(kind, torch.float64, num_layers=2, bidirectional=bidirectional)
    torch.manual_seed(2)
    packed = packed_batch(lengths, enforce_sorted=lengths == sorted(lengths, reverse=True), dtype=torch.float64)
    packed.data.requires_grad_()
    for hx in (None, initial_state(kind, 2 * (2 if bidirectional else 1), len(lengths), torch.float64)):
        result_ours, result_theirs = ours(packed, hx), theirs(packed, hx)
        output = result_ours[0]
        assert isinstance(output, PackedSequence)
        assert torch.equal(output.batch_sizes, result_theirs[0].batch_sizes)
        assert_results_close(result_ours, result_theirs, 1e-10)
        padded_ours, lengths_ours = pad_packed_sequence(output)
        padded_theirs, _ = pad_packed_sequence(result_theirs[0])
        torch.testing.assert_close(padded_ours, padded_theirs, atol=1e-10, rtol=0)
        assert lengths_ours.tolist() == lengths
    grad_ours, grad_theirs = (
        torch.autograd.grad(sum(tensor.sum() for tensor in flatten(result)), packed.data)[0]
        for result in (result_ours, result_theirs)
    )
    torch.testing.assert_close(grad_ours, grad_theirs, atol=1e-10, rtol=0)


def test_packed_h_n_is_taken_at_each_sequences_last_step() -> None:
    ours, _ = make_pair("gru", torch.float64, bidirectional=True)
    torch.manual_seed(4)
    padded = torch.randn(SEQ_LEN, 2, INPUT, dtype=torch.float64)
    output, h_n = ours(pack_padded_sequence(padded, torch.tensor([5, 2])))
    short_output, short_h_n = ours(padded[:2, 1:])  # the second sequence alone, cut to its length
    torch.testing.assert_close(h_n[:, 1:], short_h_n, atol=1e-12, rtol=0)
    torch.testing.assert_close(pad_packed_sequence(output)[0][:2, 1:], short_output, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_gives_the_scratch_results_on_the_same_weights(kind: str) -> None:
    ours_class, _, extra = KINDS[kind]
    torch.manual_seed(0)
    model = ours_class(INPUT, HIDDEN, num_layers=2, bidirectional=True, batch_first=True, **extra).double()
    keys = list(model.state_dict())
    x = torch.randn(BATCH, SEQ_LEN, INPUT, dtype=torch.float64)
    packed = packed_batch([3, 5, 2], enforce_sorted=False, dtype=torch.float64)
    scratch, scratch_packed = model(x), model(packed)
    model.impl = "fused"  # the switch, after construction
    assert_results_close(model(x), scratch, 1e-10)
    assert_results_close(model(packed), scratch_packed, 1e-10)
    assert list(model.state_dict()) == keys
    fused = ours_class(INPUT, HIDDEN, num_layers=2, bidirectional=True, batch_first=True, impl="fused", **extra)
    fused.load_state_dict(model.state_dict(), strict=True)
    assert_results_close(fused.double()(x), scratch, 1e-10)
    # the fused forward trains this module's own parameters
    sum(tensor.sum() for tensor in flatten(model(x))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert "impl='fused'" in repr(model)


@pytest.mark.parametrize("impl", ["scratch", "fused"])
def test_inter_layer_dropout(impl: str) -> None:
    x = torch.randn(SEQ_LEN, BATCH, INPUT)
    ours, theirs = make_pair("lstm", num_layers=2, dropout=0.5)
    ours.impl = impl
    ours.eval(), theirs.eval()
    assert_results_close(ours(x), theirs(x), 1e-5)  # ignored in eval mode
    ours.train()
    first, second = ours(x)[0], ours(x)[0]
    assert not torch.allclose(first, second)
    ours, theirs = make_pair("lstm", num_layers=2, dropout=0.0)
    ours.impl = impl
    ours.train(), theirs.train()
    assert_results_close(ours(x), theirs(x), 1e-5)


def test_dropout_with_one_layer_warns_as_torch_nn_does() -> None:
    with pytest.warns(UserWarning, match="dropout acts between layers only"):
        LSTM(INPUT, HIDDEN, dropout=0.2)
    with pytest.raises(ValueError, match=r"dropout is a probability in \[0, 1\], got 1.5"):
        LSTM(INPUT, HIDDEN, num_layers=2, dropout=1.5)


def cell_inputs(gates: int) -> list[torch.Tensor]:
    """x, h, W_ih, W_hh, b_ih, b_hh in double precision, all requiring gradients."""
    shapes = [(2, 3), (2, 4), (gates * 4, 3), (gates * 4, 4), (gates * 4,), (gates * 4,)]
    return [torch.randn(shape, dtype=torch.float64, requires_grad=True) for shape in shapes]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "gru_reset_before"])
def test_cells_pass_gradcheck(cell: str) -> None:
    torch.manual_seed(5)
    if cell == "rnn":
        assert torch.autograd.gradcheck(rnn_cell, cell_inputs(1))
    elif cell == "lstm":
        x, h, *weights = cell_inputs(4)
        c = torch.randn_like(h, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, h, c, *w: lstm_cell(x, (h, c), *w), [x, h, c, *weights])
    else:
        reset_after = cell == "gru"
        assert torch.autograd.gradcheck(lambda *args: gru_cell(*args, reset_after=reset_after), cell_inputs(3))


def test_gru_reset_before_is_cho_et_al() -> None:
    torch.manual_seed(6)
    paper = GRU(INPUT, HIDDEN, reset_after=False).double()
    pytorch = GRU(INPUT, HIDDEN).double()
    pytorch.load_state_dict(paper.state_dict())
    x = torch.randn(1, BATCH, INPUT, dtype=torch.float64)
    h_0 = torch.randn(1, BATCH, HIDDEN, dtype=torch.float64)
    _, h_1 = paper(x, h_0)
    assert not torch.allclose(h_1, pytorch(x, h_0)[1])
    # Cho et al. 2014, Eqs. 5-8 with PyTorch's biases (and its z: h = z h_{t-1} + (1 - z) h~), by hand
    w_ir, w_iz, w_in = paper.weight_ih_l0.chunk(3)
    w_hr, w_hz, w_hn = paper.weight_hh_l0.chunk(3)
    b_ir, b_iz, b_in = paper.bias_ih_l0.chunk(3)
    b_hr, b_hz, b_hn = paper.bias_hh_l0.chunk(3)
    x, h = x[0], h_0[0]
    r = torch.sigmoid(x @ w_ir.T + b_ir + h @ w_hr.T + b_hr)
    z = torch.sigmoid(x @ w_iz.T + b_iz + h @ w_hz.T + b_hz)
    candidate = torch.tanh(x @ w_in.T + b_in + (r * h) @ w_hn.T + b_hn)
    torch.testing.assert_close(h_1[0], z * h + (1 - z) * candidate, atol=1e-12, rtol=0)


def test_gru_reset_before_has_no_fused_kernel() -> None:
    with pytest.raises(ValueError, match=r"GRU\(reset_after=False\) has no fused kernel.*impl='scratch'"):
        GRU(INPUT, HIDDEN, reset_after=False, impl="fused")
    model = GRU(INPUT, HIDDEN, reset_after=False)
    model.impl = "fused"
    with pytest.raises(ValueError, match="has no fused kernel"):
        model(torch.randn(SEQ_LEN, BATCH, INPUT))
    with pytest.raises(ValueError, match="unknown impl 'cudnn'; accepted: scratch, fused"):
        LSTM(INPUT, HIDDEN, impl="cudnn")


@pytest.mark.parametrize("impl", ["scratch", "fused"])
def test_bad_input_names_the_expected_shape(impl: str) -> None:
    model = LSTM(32, HIDDEN, num_layers=2, impl=impl)
    expected = r"LSTM expects input of shape \(seq_len, batch, 32\) with batch_first=False"
    with pytest.raises(ValueError, match=expected + r", got \(5, 3, 16\)"):
        model(torch.randn(5, 3, 16))
    with pytest.raises(ValueError, match=expected + r", got \(5, 3, 32, 1\)"):
        model(torch.randn(5, 3, 32, 1))
    with pytest.raises(ValueError, match=r"LSTM expects unbatched input of shape \(seq_len, 32\), got \(5, 16\)"):
        model(torch.randn(5, 16))
    with pytest.raises(ValueError, match=r"RNN expects input of shape \(batch, seq_len, 4\) with batch_first=True"):
        RNN(INPUT, HIDDEN, batch_first=True, impl=impl)(torch.randn(3, 5, 7))
    with pytest.raises(ValueError, match=r"GRU expects a PackedSequence of data \(steps, 6\), got \(10, 4\)"):
        GRU(6, HIDDEN, impl=impl)(packed_batch([5, 3, 2], enforce_sorted=True, dtype=torch.float32))
    x = torch.randn(5, 3, 32)
    h_0 = torch.zeros(2, 3, HIDDEN)
    with pytest.raises(ValueError, match=r"LSTM expects c_0 of shape \(2, 3, 6\), got \(1, 3, 6\)"):
        model(x, (h_0, torch.zeros(1, 3, HIDDEN)))
    with pytest.raises(ValueError, match=r"LSTM expects hx = h_0, c_0, got 1 tensors"):
        model(x, h_0)
    with pytest.raises(ValueError, match=r"GRU expects h_0 of shape \(4, 3, 6\), got \(2, 3, 6\)"):
        GRU(32, HIDDEN, num_layers=2, bidirectional=True, impl=impl)(x, h_0)


def test_benchmark_script_times_both_implementations(tmp_path) -> None:
    from conftest import run_script

    result = run_script("benchmark_rnn.py", "steps=1", "seq_len=3", "batch=2", "input_size=2", "hidden=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(("| RNN", "| LSTM", "| GRU"))]
    assert len(rows) == 3 and all(row.endswith("x |") for row in rows)
    bad = run_script("benchmark_rnn.py", "steps=0", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: expected key=positive integer")
