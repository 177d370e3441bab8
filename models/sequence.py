"""A recurrent network read out from its last hidden state, for sequence classification and regression.

This is the model of sequential MNIST and the adding problem (Le, Jaitly & Hinton 2015): the sequence
(batch, steps, features) runs through ``num_layers`` of an RNN, LSTM or GRU from ``models.rnn``, and a
linear layer maps the top layer's final hidden state (both directions' when bidirectional) to
``num_outputs`` numbers: class scores, or one value for a regression.
"""

from __future__ import annotations

import torch
from torch import nn

from models.rnn import make_recurrent


class SequenceModel(nn.Module):
    """``cell`` ("rnn", "lstm" or "gru") over (batch, steps, ``input_size``) inputs, read out linearly."""

    def __init__(
        self,
        cell: str = "lstm",
        input_size: int = 1,
        num_outputs: int = 10,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        impl: str = "scratch",
    ) -> None:
        super().__init__()
        self.cell = cell
        self.input_size = input_size
        self.rnn = make_recurrent(
            cell,
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout,
            bidirectional=bidirectional,
            impl=impl,
        )
        self.directions = 2 if bidirectional else 1
        self.head = nn.Linear(hidden_size * self.directions, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"SequenceModel takes sequences of shape (batch, steps, {self.input_size}), got {tuple(x.shape)}"
            )
        _, state = self.rnn(x)
        h_n = state[0] if self.cell == "lstm" else state  # (layers * directions, batch, hidden)
        last = torch.cat(list(h_n[-self.directions :]), dim=-1)  # the top layer's final state, both directions
        return self.head(last)
