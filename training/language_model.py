"""The LightningModule for character-level language modelling, trained with truncated backpropagation through time.

The data (``data.text.CharTextDataModule``) serves each split as ``batch_size`` streams in consecutive
chunks, so the recurrent state a batch ends with is where the next batch of the same streams begins.
Training carries that state from batch to batch, detached from the graph so that the gradient flows
back through one chunk of ``seq_len`` steps only (truncated BPTT, Williams & Peng 1990; as in
Karpathy's char-rnn and PyTorch's word-language-model example). The state starts from zeros at the
start of every training epoch and of every validation and test loop. Gradient-norm clipping is the
trainer's ``gradient_clip_val``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics import MinMetric

from training.base import OptimizerFactory, TrainingModule, loss_mean

State = torch.Tensor | tuple[torch.Tensor, ...]


def detach(state: State | None) -> State | None:
    """The state as values only: gradients stop at the chunk boundary."""
    if state is None:
        return None
    return tuple(part.detach() for part in state) if isinstance(state, tuple) else state.detach()


class LanguageModel(TrainingModule):
    """Next-character cross-entropy for ``net`` (a ``models.char_rnn.CharRNN``), the state carried across batches.

    Logs ``{train,val,test}/loss`` in nats per character, ``val/bpc`` and ``test/bpc`` (bits per
    character, the loss / ln 2), ``val/perplexity`` (exp of the epoch's loss) and ``val/loss_best``.
    ``vocab`` (the characters, index i being character i) is kept in the checkpoint's hyperparameters
    with ``run_config``, so that a checkpoint alone is enough to sample text. The other arguments are
    ``TrainingModule``'s.
    """

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory | None, vocab: str, **kwargs: Any) -> None:
        super().__init__(net, optimizer, **kwargs)
        if not isinstance(vocab, str) or not vocab:
            raise ValueError(f"vocab must be the text's characters as a non-empty string, got {vocab!r}")
        vocab_size = getattr(net, "vocab_size", len(vocab))
        if vocab_size != len(vocab):
            raise ValueError(f"the model predicts {vocab_size} characters but the vocabulary has {len(vocab)}")
        self.train_state: State | None = None  # carried from one training batch to the next
        self.eval_state: State | None = None  # the same within one validation or test loop
        # the epoch's values accumulate batch by batch and are logged once (Lightning's self.log costs about 0.4 ms)
        self.val_loss, self.test_loss = loss_mean(), loss_mean()
        self.val_loss_best = MinMetric()

    def monitorable_metrics(self) -> list[str]:
        return ["val/loss", "val/bpc", "val/perplexity", "val/loss_best", "train/loss"]

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], state: State | None) -> tuple[torch.Tensor, State]:
        inputs, targets = batch
        logits, state = self.net.forward_with_state(inputs, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return loss, detach(state)

    def on_train_epoch_start(self) -> None:
        self.train_state = None

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, self.train_state = self._step(batch, self.train_state)
        self.log_training_loss(loss, len(batch[1]))
        return self.regularize(loss, len(batch[1]))

    def on_validation_epoch_start(self) -> None:
        self.eval_state = None

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, self.eval_state = self._step(batch, self.eval_state)
        self.val_loss.update(loss)  # every batch has the same number of characters: the mean is per character

    def on_validation_epoch_end(self) -> None:
        # the mean over the whole validation set, every process's share under DDP
        loss = self.val_loss.compute()
        self.val_loss.reset()
        self.val_loss_best(loss)
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/bpc", loss / math.log(2), prog_bar=True)
        self.log("val/perplexity", torch.exp(loss))
        self.log("val/loss_best", self.val_loss_best.compute(), prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self.eval_state = None

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, self.eval_state = self._step(batch, self.eval_state)
        self.test_loss.update(loss)

    def on_test_epoch_end(self) -> None:
        loss = self.test_loss.compute()
        self.test_loss.reset()
        self.log("test/loss", loss)
        self.log("test/bpc", loss / math.log(2))
