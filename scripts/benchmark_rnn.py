"""Training steps per second of the scratch and fused recurrent implementations, side by side.

    python scripts/benchmark_rnn.py [steps=30] [seq_len=28] [batch=64] [input_size=28] [hidden=128]

One step is a forward pass over the sequence, cross-entropy on a linear read-out of the last hidden
state, the backward pass and an SGD update, with the same weights for both implementations. The two
are timed alternately in one run, so the ratio holds even on a noisy machine.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

import torch
from torch import nn

from models.rnn import GRU, LSTM, RNN
from training.cli import parse_int_options, run_plain

DEFAULTS = {"steps": 30, "seq_len": 28, "batch": 64, "input_size": 28, "hidden": 128}


def make_step(cell: type[nn.Module], options: dict[str, int]) -> tuple[nn.Module, Callable[[], None]]:
    torch.manual_seed(0)
    rnn = cell(options["input_size"], options["hidden"], batch_first=True)
    head = nn.Linear(options["hidden"], 10)
    optimizer = torch.optim.SGD([*rnn.parameters(), *head.parameters()], lr=0.01)
    inputs = torch.randn(options["batch"], options["seq_len"], options["input_size"])
    labels = torch.randint(0, 10, (options["batch"],))

    def step() -> None:
        _, state = rnn(inputs)
        h_n = state[0] if isinstance(state, tuple) else state
        loss = nn.functional.cross_entropy(head(h_n[-1]), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return rnn, step


def main(args: list[str]) -> None:
    options = parse_int_options(args, DEFAULTS)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(
        f"seq_len {options['seq_len']}, batch {options['batch']}, input {options['input_size']}, "
        f"hidden {options['hidden']}, {options['steps']} steps each"
    )
    print("| cell | scratch steps/s | fused steps/s | fused / scratch |")
    print("|---|---|---|---|")
    for cell in (RNN, LSTM, GRU):
        rnn, step = make_step(cell, options)
        seconds = {"scratch": 0.0, "fused": 0.0}
        for impl in ("scratch", "fused"):  # warm up both
            rnn.impl = impl
            step()
        for _ in range(options["steps"]):  # alternate, so both see the same machine
            for impl in seconds:
                rnn.impl = impl
                start = time.perf_counter()
                step()
                seconds[impl] += time.perf_counter() - start
        scratch, fused = (options["steps"] / seconds[impl] for impl in ("scratch", "fused"))
        print(f"| {cell.__name__} | {scratch:.1f} | {fused:.1f} | {fused / scratch:.2f}x |")


if __name__ == "__main__":
    run_plain(main, ValueError)
