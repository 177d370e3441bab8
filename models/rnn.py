"""Recurrent networks: the simple RNN, the LSTM and the GRU, written from their equations.

J. L. Elman, "Finding Structure in Time", Cognitive Science 14(2), 1990 (the simple recurrent network).
S. Hochreiter, J. Schmidhuber, "Long Short-Term Memory", Neural Computation 9(8), 1997.
F. A. Gers, J. Schmidhuber, F. Cummins, "Learning to Forget: Continual Prediction with LSTM", Neural Computation
12(10), 2000 (the forget gate).
K. Cho, B. van Merrienboer, C. Gulcehre, D. Bahdanau, F. Bougares, H. Schwenk, Y. Bengio, "Learning Phrase
Representations using RNN Encoder-Decoder for Statistical Machine Translation", EMNLP 2014, Sec. 2.3 (the GRU).
J. Chung, C. Gulcehre, K. Cho, Y. Bengio, "Empirical Evaluation of Gated Recurrent Neural Networks on Sequence
Modeling", arXiv:1412.3555, 2014.

One time step of each cell, as the code computes it (x_t the input, h_{t-1} the previous hidden state, * the
elementwise product, sigmoid the logistic function):

    RNN   h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)          (relu instead of tanh with nonlinearity="relu")

    LSTM  i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)        input gate
          f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)        forget gate
          g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)           cell candidate
          o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)        output gate
          c_t = f_t * c_{t-1} + i_t * g_t
          h_t = o_t * tanh(c_t)

    GRU   r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)        reset gate
          z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)        update gate
          n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))   candidate
          h_t = (1 - z_t) * n_t + z_t * h_{t-1}

Elman's network used logistic units; torch.nn uses tanh (or relu), and so does this module. The 1997 LSTM has no
forget gate (c_t = c_{t-1} + i_t * g_t, the "constant error carousel"); Gers et al. 2000 added f_t. Peepholes are not
used, as in torch.nn and cuDNN.

The GRU has two published forms, twice over:
  - the update: Cho et al. (Eq. 7), PyTorch and cuDNN write h_t = z_t * h_{t-1} + (1 - z_t) * n_t; Chung et al. write
    h_t = (1 - z_t) * h_{t-1} + z_t * n_t. Since 1 - sigmoid(a) = sigmoid(-a) these are the same family of functions,
    z relabelled as 1 - z (negate W_iz, W_hz, b_iz, b_hz), so only PyTorch's is implemented.
  - the reset gate: PyTorch and cuDNN apply it after the hidden matmul, n_t = tanh(W_in x_t + b_in + r_t * (W_hn
    h_{t-1} + b_hn)) (the default, ``reset_after=True``); Cho et al. (Eq. 8) and Chung et al. apply it before,
    n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn), a different function: ``reset_after=False``. The papers
    have no biases; here b_in and b_hn simply add up. cuDNN has no kernel for this form, so it runs from scratch only.

Parameters are named, shaped and registered in the order of torch.nn, so state dicts load either way (k the layer,
H = hidden_size, G = 1, 4, 3 gates for RNN, LSTM, GRU, D = 2 if bidirectional else 1):

    weight_ih_l{k}   (G*H, input_size for k = 0, else D*H)   rows stacked by gate: i, f, g, o (LSTM); r, z, n (GRU)
    weight_hh_l{k}   (G*H, H)
    bias_ih_l{k}     (G*H)    two biases, as cuDNN has them: only their sum matters, except b_hn in the GRU
    bias_hh_l{k}     (G*H)
    ..._reverse      the same for the backward direction

All start uniform in (-1/sqrt(H), 1/sqrt(H)), as in torch.nn. Layer k > 0 reads the D*H outputs of layer k - 1 (the
forward and backward ones side by side), with ``dropout`` on them in training mode; the last layer has none.

``impl="scratch"`` (the default) runs the cells above in a Python loop over the time steps. ``impl="fused"`` runs
torch.nn's own forward (its C++ and cuDNN kernels) on the very same Parameter objects: it is a switch, not a copy, so
``model.impl = "fused"`` works at any time and the state dict does not change.

Calls and returns are those of torch.nn: ``output, h_n`` for RNN and GRU, ``output, (h_n, c_n)`` for the LSTM, an
optional initial state ``hx``, unbatched 2-D input, and a ``PackedSequence`` of variable-length sequences, for which
h_n is taken at each sequence's last step and the backward direction starts at each sequence's end. Not supported:
``proj_size`` (the projected LSTM), ``flatten_parameters()`` and ``all_weights``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

IMPLS = ("scratch", "fused")


def rnn_cell(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    nonlinearity: str = "tanh",
) -> Tensor:
    """One step of the simple RNN: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), or relu."""
    pre_activation = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
    return torch.tanh(pre_activation) if nonlinearity == "tanh" else torch.relu(pre_activation)


def lstm_cell(
    x: Tensor,
    state: tuple[Tensor, Tensor],
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One step of the LSTM: from (h_{t-1}, c_{t-1}) to (h_t, c_t)."""
    h, c = state
    # the four gates' pre-activations at once: W_i* x_t + b_i* + W_h* h_{t-1} + b_h*, rows in the order i, f, g, o
    i, f, g, o = (F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)).chunk(4, dim=-1)
    i = torch.sigmoid(i)  # input gate
    f = torch.sigmoid(f)  # forget gate (Gers et al. 2000)
    g = torch.tanh(g)  # cell candidate
    o = torch.sigmoid(o)  # output gate
    c = f * c + i * g  # c_t = f_t * c_{t-1} + i_t * g_t
    h = o * torch.tanh(c)  # h_t = o_t * tanh(c_t)
    return h, c


def gru_cell(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    reset_after: bool = True,
) -> Tensor:
    """One step of the GRU: the reset gate after the hidden matmul (PyTorch, cuDNN) or before it (Cho et al.)."""
    x_r, x_z, x_n = F.linear(x, w_ih, b_ih).chunk(3, dim=-1)  # W_ir x_t + b_ir, W_iz x_t + b_iz, W_in x_t + b_in
    w_hr, w_hz, w_hn = w_hh.chunk(3)
    b_hr, b_hz, b_hn = (None, None, None) if b_hh is None else b_hh.chunk(3)
    r = torch.sigmoid(x_r + F.linear(h, w_hr, b_hr))  # r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z = torch.sigmoid(x_z + F.linear(h, w_hz, b_hz))  # z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    # n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn)) with the reset after the matmul (PyTorch, cuDNN),
    # n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn) with the reset before it (Cho et al., Eq. 8)
    reset_hidden = r * F.linear(h, w_hn, b_hn) if reset_after else F.linear(r * h, w_hn, b_hn)
    n = torch.tanh(x_n + reset_hidden)
    return (1 - z) * n + z * h  # h_t = (1 - z_t) * n_t + z_t * h_{t-1}


def pack_like(padded: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack ``padded`` (seq_len, batch, features), batch in the caller's order, in the layout of ``like``."""
    order = like.sorted_indices
    if order is None:
        order = torch.arange(padded.shape[1], device=padded.device)
    # A PackedSequence holds, step after step, the sequences still running at that step, longest first.
    data = torch.cat([padded[t, order[:running]] for t, running in enumerate(like.batch_sizes.tolist())])
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


class RecurrentNet(nn.Module):
    """What RNN, LSTM and GRU share: the parameters, the checks, the loop over layers, directions and time.

    A subclass sets ``num_gates``, ``state_names`` (("h_0",) or ("h_0", "c_0")), ``torch_class`` and ``cell``.
    Inside, a state is always a tuple: (h,) for the RNN and the GRU, (h, c) for the LSTM.
    """

    num_gates: int
    state_names: tuple[str, ...] = ("h_0",)
    torch_class: type[nn.RNNBase]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        impl: str = "scratch",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= dropout <= 1:
            raise ValueError(f"dropout is a probability in [0, 1], got {dropout}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"dropout acts between layers only, so dropout={dropout} does nothing with num_layers=1", stacklevel=2
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.impl = impl
        self.check_impl()
        num_directions = 2 if bidirectional else 1
        gate_size = self.num_gates * hidden_size
        for layer in range(num_layers):
            for direction in range(num_directions):
                layer_input_size = input_size if layer == 0 else hidden_size * num_directions
                suffix = self.suffix(layer, direction)
                shapes = {"weight_ih": (gate_size, layer_input_size), "weight_hh": (gate_size, hidden_size)}
                if bias:
                    shapes |= {"bias_ih": (gate_size,), "bias_hh": (gate_size,)}
                for name, shape in shapes.items():
                    self.register_parameter(name + suffix, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias uniform in (-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as in torch.nn."""
        bound = 1 / math.sqrt(self.hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def check_impl(self) -> None:
        if self.impl not in IMPLS:
            raise ValueError(f"unknown impl {self.impl!r}; accepted: {', '.join(IMPLS)}")

    @staticmethod
    def suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction == 1 else "")

    def layer_weights(self, layer: int, direction: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """(W_ih, W_hh, b_ih, b_hh) of one layer and direction; the biases are None with ``bias=False``."""
        suffix = self.suffix(layer, direction)
        if not self.bias:
            return getattr(self, "weight_ih" + suffix), getattr(self, "weight_hh" + suffix), None, None
        return tuple(getattr(self, name + suffix) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def cell(self, x: Tensor, state: tuple[Tensor, ...], *weights: Tensor | None) -> tuple[Tensor, ...]:
        """One time step: the next state from the input x_t and the state at t - 1."""
        raise NotImplementedError

    def torch_options(self) -> dict:
        """The constructor arguments of the equivalent torch.nn module."""
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "dropout": self.dropout,
            "bidirectional": self.bidirectional,
        }

    def torch_module(self) -> nn.RNNBase:
        """The torch.nn module of this configuration, holding this module's very Parameters (shared, not copied).

        It is built on the meta device (no memory, no initialisation) and is not a submodule, so ``parameters()``
        and the state dict stay as they are; gradients of its forward land on this module's parameters.
        """
        # torch warns about dropout with a single layer, where it does nothing; say it once, in __init__ above.
        options = self.torch_options() | {"dropout": self.dropout if self.num_layers > 1 else 0.0}
        twin = self.torch_class(**options, device="meta")
        for name, parameter in self.named_parameters():
            setattr(twin, name, parameter)
        return twin.train(self.training)

    def check_input(self, input: Tensor | PackedSequence, hx: Tensor | tuple[Tensor, ...] | None) -> None:
        """Raise ``ValueError`` naming the expected shape when the input or the initial state does not fit."""
        name = type(self).__name__
        if isinstance(input, PackedSequence):
            if input.data.dim() != 2 or input.data.shape[1] != self.input_size:
                raise ValueError(
                    f"{name} expects a PackedSequence of data (steps, {self.input_size}), got {tuple(input.data.shape)}"
                )
            batch = (int(input.batch_sizes[0]),)
        elif input.dim() == 2:  # unbatched: (seq_len, features) whatever batch_first says, as in torch.nn
            if input.shape[1] != self.input_size:
                raise ValueError(
                    f"{name} expects unbatched input of shape (seq_len, {self.input_size}), got {tuple(input.shape)}"
                )
            batch = ()
        else:
            if input.dim() != 3 or input.shape[2] != self.input_size:
                dims = "batch, seq_len" if self.batch_first else "seq_len, batch"
                raise ValueError(
                    f"{name} expects input of shape ({dims}, {self.input_size}) with batch_first={self.batch_first}, "
                    f"got {tuple(input.shape)}"
                )
            batch = (input.shape[0 if self.batch_first else 1],)
        if hx is None:
            return
        states = hx if isinstance(hx, tuple) else (hx,)
        if len(states) != len(self.state_names):
            raise ValueError(f"{name} expects hx = {', '.join(self.state_names)}, got {len(states)} tensors")
        expected = (self.num_layers * (2 if self.bidirectional else 1), *batch, self.hidden_size)
        for state_name, state in zip(self.state_names, states, strict=True):
            if tuple(state.shape) != expected:
                raise ValueError(f"{name} expects {state_name} of shape {expected}, got {tuple(state.shape)}")

    def forward(
        self, input: Tensor | PackedSequence, hx: Tensor | tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor | PackedSequence, Tensor | tuple[Tensor, Tensor]]:
        """``output, h_n`` (RNN, GRU) or ``output, (h_n, c_n)`` (LSTM), as torch.nn returns them."""
        self.check_impl()
        self.check_input(input, hx)
        if self.impl == "fused":
            return self.torch_module()(input, hx)

        # Bring every form of input to (seq_len, batch, features), the batch in the caller's order.
        packed = isinstance(input, PackedSequence)
        unbatched = not packed and input.dim() == 2
        lengths = None  # the length of each sequence, for a PackedSequence
        if packed:
            x, lengths = pad_packed_sequence(input)
            lengths = lengths.to(x.device)
        elif unbatched:
            x = input.unsqueeze(1)
        else:
            x = input.transpose(0, 1) if self.batch_first else input
        num_directions = 2 if self.bidirectional else 1
        if hx is None:
            zeros = x.new_zeros(self.num_layers * num_directions, x.shape[1], self.hidden_size)
            initial = (zeros,) * len(self.state_names)
        else:
            initial = hx if isinstance(hx, tuple) else (hx,)
            initial = tuple(state.unsqueeze(1) for state in initial) if unbatched else initial

        layer_input = x
        final = []  # the last state of each layer and direction, in the order of h_n
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(num_directions):
                index = layer * num_directions + direction
                state = tuple(states[index] for states in initial)
                weights = self.layer_weights(layer, direction)
                output, state = self.run(layer_input, state, weights, lengths, reverse=direction == 1)
                outputs.append(output)
                final.append(state)
            layer_input = torch.cat(outputs, dim=2)  # (seq_len, batch, D*H): forward and backward side by side
            if layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, p=self.dropout, training=self.training)
        output = layer_input
        h_n = tuple(torch.stack(states) for states in zip(*final, strict=True))  # (h_n,) or (h_n, c_n)

        if packed:
            output = pack_like(output, input)
        elif unbatched:
            output, h_n = output.squeeze(1), tuple(state.squeeze(1) for state in h_n)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n if len(h_n) == 2 else h_n[0])

    def run(
        self,
        x: Tensor,
        state: tuple[Tensor, ...],
        weights: tuple[Tensor | None, ...],
        lengths: Tensor | None,
        reverse: bool,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """The cell along x (seq_len, batch, features) from ``state``, backwards if ``reverse``: all h_t, last state."""
        outputs = [None] * len(x)
        steps = reversed(range(len(x))) if reverse else range(len(x))
        for t in steps:
            new_state = self.cell(x[t], state, *weights)
            if lengths is not None:
                # A sequence of length L runs steps 0 to L-1 only; elsewhere its state stays as it is, so forwards
                # it keeps its last state and backwards it starts from the initial state at its own last step.
                running = (t < lengths).unsqueeze(1)
                new_state = tuple(torch.where(running, new, old) for new, old in zip(new_state, state, strict=True))
            state = new_state
            outputs[t] = state[0]  # h_t
        return torch.stack(outputs), state

    def extra_repr(self) -> str:
        options = self.torch_options()
        return f"{options.pop('input_size')}, {options.pop('hidden_size')}, " + ", ".join(
            [f"{key}={value!r}" for key, value in options.items()] + [f"impl={self.impl!r}"]
        )


class RNN(RecurrentNet):
    """The simple (Elman) RNN, multi-layer and bidirectional, with tanh or relu; a drop-in for ``torch.nn.RNN``."""

    num_gates = 1
    torch_class = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        *args: Any,
        **kwargs: Any,
    ) -> None:
        # torch.nn.RNN's order: nonlinearity comes fourth, then the arguments of every RecurrentNet
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; accepted: tanh, relu")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, *args, **kwargs)

    def cell(self, x: Tensor, state: tuple[Tensor], *weights: Tensor | None) -> tuple[Tensor]:
        return (rnn_cell(x, state[0], *weights, nonlinearity=self.nonlinearity),)

    def torch_options(self) -> dict:
        return super().torch_options() | {"nonlinearity": self.nonlinearity}


class LSTM(RecurrentNet):
    """The LSTM with a forget gate, multi-layer and bidirectional; a drop-in for ``torch.nn.LSTM``."""

    num_gates = 4
    state_names = ("h_0", "c_0")
    torch_class = nn.LSTM

    def cell(self, x: Tensor, state: tuple[Tensor, Tensor], *weights: Tensor | None) -> tuple[Tensor, Tensor]:
        return lstm_cell(x, state, *weights)


class GRU(RecurrentNet):
    """The GRU, multi-layer and bidirectional; a drop-in for ``torch.nn.GRU``.

    ``reset_after=False`` applies the reset gate before the hidden matmul, as Cho et al. 2014 (scratch only).
    """

    num_gates = 3
    torch_class = nn.GRU

    def __init__(self, *args: Any, reset_after: bool = True, **kwargs: Any) -> None:
        self.reset_after = reset_after
        super().__init__(*args, **kwargs)  # the arguments of every RecurrentNet, as torch.nn.GRU's

    def check_impl(self) -> None:
        super().check_impl()
        if self.impl == "fused" and not self.reset_after:
            raise ValueError(
                "GRU(reset_after=False) has no fused kernel: cuDNN and torch.nn apply the reset gate after the hidden "
                "matmul only; use impl='scratch'"
            )

    def cell(self, x: Tensor, state: tuple[Tensor], *weights: Tensor | None) -> tuple[Tensor]:
        return (gru_cell(x, state[0], *weights, reset_after=self.reset_after),)

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.reset_after else ", reset_after=False")


CELLS: dict[str, type[RecurrentNet]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def make_recurrent(
    cell: str, input_size: int, hidden_size: int, accepted: tuple[str, ...] = tuple(CELLS), **options: Any
) -> RecurrentNet:
    """The ``cell`` network (one of ``accepted``: ``"rnn"``, ``"lstm"``, ``"gru"``) with torch.nn's ``options``; another
    name raises a one-line ``ValueError`` that lists them."""
    if cell not in accepted:
        raise ValueError(f"unknown cell {cell!r}; accepted: {', '.join(accepted)}")
    return CELLS[cell](input_size, hidden_size, **options)
