"""Generate text from a character-level language model checkpoint (experiment=char_lstm).

python scripts/sample.py ckpt_path=<checkpoint> [prime="The "] [temperature=0.8] [length=500] [seed=0]

The model is rebuilt from the configuration stored in the checkpoint and its vocabulary from the
checkpoint's hyperparameters; the text file it was trained on is not needed. The prime runs through
the network, then ``length`` characters are drawn one at a time from softmax(logits / temperature),
each fed back in with the recurrent state carried along. Prints the prime and the generated text.
"""

from __future__ import annotations

from typing import Any

import hydra
import torch

from training.cli import run_plain
from training.config import UserError
from training.tasks import load_checkpoint

USAGE = 'usage: python scripts/sample.py ckpt_path=<checkpoint> [prime="The "] [temperature=0.8] [length=500] [seed=0]'
DEFAULTS = {"prime": "\n", "temperature": "0.8", "length": "500", "seed": None}


def parse_args(args: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = dict(DEFAULTS)
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key not in ("ckpt_path", *DEFAULTS):
            raise UserError(f"unknown argument {arg!r}; {USAGE}")
        options[key] = value
    if "ckpt_path" not in options:
        raise UserError(f"ckpt_path=<checkpoint> is required; {USAGE}")
    try:
        options["temperature"] = float(options["temperature"])
        options["length"] = int(options["length"])
        options["seed"] = None if options["seed"] is None else int(options["seed"])
    except ValueError as err:
        raise UserError(f"{err}; {USAGE}") from None
    if not options["temperature"] > 0:
        raise UserError(f"temperature must be greater than 0, got {options['temperature']}")
    if options["length"] < 0:
        raise UserError(f"length must be 0 or more characters, got {options['length']}")
    if not options["prime"]:
        raise UserError("prime must hold at least one character to start from")
    return options


def load_model(ckpt_path: str) -> tuple[torch.nn.Module, str]:
    """The network of a language-model checkpoint, with its weights, and its vocabulary."""
    checkpoint = load_checkpoint(ckpt_path)
    vocab = checkpoint["hyper_parameters"].get("vocab")
    if not isinstance(vocab, str) or not vocab:
        raise UserError(f"{ckpt_path} is not a language-model checkpoint (its hyperparameters hold no vocabulary)")
    try:
        net = hydra.utils.instantiate(checkpoint["hyper_parameters"]["run_config"]["model"])
        weights = {key.removeprefix("net."): value for key, value in checkpoint["state_dict"].items()}
        net.load_state_dict(weights)
    except Exception as err:
        raise UserError(f"{ckpt_path}: the model in its config cannot be rebuilt with its weights: {err}") from err
    if not hasattr(net, "forward_with_state"):
        raise UserError(f"{ckpt_path} holds a {type(net).__name__}, not a character-level language model")
    return net.eval(), vocab


@torch.no_grad()
def sample(net: torch.nn.Module, vocab: str, prime: str, length: int, temperature: float) -> str:
    """``length`` characters drawn after ``prime``, one at a time, the state carried from each to the next."""
    index = {char: i for i, char in enumerate(vocab)}
    unseen = sorted(set(prime) - set(index))
    if unseen:
        shown = vocab if len(vocab) <= 80 else vocab[:80] + "..."
        raise UserError(
            f"the prime has character(s) never seen in training: {', '.join(map(repr, unseen))}; "
            f"expected characters of the model's vocabulary of {len(vocab)}: {shown!r}"
        )
    tokens = torch.tensor([[index[char] for char in prime]], dtype=torch.long)
    logits, state = net.forward_with_state(tokens)
    generated = []
    for _ in range(length):
        probabilities = torch.softmax(logits[0, -1] / temperature, dim=-1)
        next_index = int(torch.multinomial(probabilities, 1))
        generated.append(vocab[next_index])
        logits, state = net.forward_with_state(torch.tensor([[next_index]]), state)
    return prime + "".join(generated)


def main(args: list[str]) -> None:
    options = parse_args(args)
    if options["seed"] is not None:
        torch.manual_seed(options["seed"])
    net, vocab = load_model(options["ckpt_path"])
    print(sample(net, vocab, options["prime"], options["length"], options["temperature"]))


if __name__ == "__main__":
    run_plain(main)
