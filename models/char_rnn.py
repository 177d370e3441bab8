"""A character-level recurrent language model: embedding, LSTM or GRU, softmax over the characters.

A. Karpathy, "The Unreasonable Effectiveness of Recurrent Neural Networks", 2015, and its char-rnn code.
A. Graves, "Generating Sequences With Recurrent Neural Networks", arXiv:1308.0850, 2013, Section 3 (text).

Each step reads one character index, looks up its ``embedding_dim`` vector, runs it through
``num_layers`` of the LSTM or GRU of ``models.rnn`` and maps the top layer's hidden state linearly to
one score per character of the vocabulary: the logits of the next character. Graves and Karpathy feed
one-hot vectors; a learned embedding is the same thing as a one-hot vector times a weight matrix.
"""

from __future__ import annotations

import torch
from torch import nn

from models.rnn import make_recurrent

CELLS = ("lstm", "gru")  # the cells of models.rnn this model takes

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # h (GRU) or (h, c) (LSTM), each (layers, batch, hidden)


class CharRNN(nn.Module):
    """Next-character logits (batch, steps, ``vocab_size``) for character indices (batch, steps)."""

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 64,
        cell: str = "lstm",
        hidden_size: int = 256,
        num_layers: int = 2,
        dropout: float = 0.0,
        impl: str = "scratch",
    ) -> None:
        super().__init__()
        if not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
        self.vocab_size = vocab_size
        self.cell = cell
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = make_recurrent(
            cell, embedding_dim, hidden_size, CELLS, num_layers=num_layers, batch_first=True, dropout=dropout, impl=impl
        )
        self.decoder = nn.Linear(hidden_size, vocab_size)

    def forward_with_state(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """The logits and the recurrent state after the last step, to start the next chunk of the same streams."""
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(
                f"CharRNN takes character indices of shape (batch, steps) and dtype torch.long, "
                f"got shape {tuple(tokens.shape)} and {tokens.dtype}"
            )
        outputs, state = self.rnn(self.embedding(tokens), state)
        return self.decoder(outputs), state

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> torch.Tensor:
        return self.forward_with_state(tokens, state)[0]
