"""An exponential moving average of the weights, validated, checkpointed and tested in place of the live ones."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EMAWeightAveraging
from pytorch_lightning.trainer.states import TrainerFn


class EMA(EMAWeightAveraging):
    """Lightning's ``EMAWeightAveraging``, kept with the model and tested as it is validated.

    After every optimizer step the average moves towards the live weights, ``ema = decay * ema + (1 - decay) * w``
    (the first update copies ``w``). Validation runs with the average swapped in, checkpoints hold it in
    ``state_dict`` (the live weights in ``current_model_state``, the update count in ``averaging_state``), and
    the average replaces the live weights when training ends. Two departures from upstream:

    * with ``device=None`` the average lives on the model's device; upstream builds it before the model is
      moved to the accelerator, so it stays in CPU memory and every step copies the weights to it;
    * upstream, loading a checkpoint restores the live weights whenever the callback holds an average, so
      ``trainer.test(ckpt_path=...)`` after ``fit`` would test the live weights; here they are restored only
      when fitting resumes, and testing sees the average in ``state_dict``.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # the module on its device before upstream copies it into the average
            pl_module.to(trainer.strategy.root_device)
        super().setup(trainer, pl_module, stage)

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
