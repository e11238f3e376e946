"""Stop a tuning trial early from its validation curve: Optuna's pruning callback for Lightning."""

from __future__ import annotations

import lightning as L
from optuna_integration import PyTorchLightningPruningCallback


class EpochEndPruning(PyTorchLightningPruningCallback):
    """optuna-integration's callback (``lightning.pytorch``), fired when our validation has run.

    The stock callback reports on ``on_validation_end``, which Lightning never calls here: the
    retrieval validation scores the whole catalogue in ``on_train_epoch_end``
    (``training/validation.py``, ``limit_val_batches=0``). Placed after that callback, this one
    reports the value it logged (``trainer.callback_metrics``) at the same point of every epoch,
    and raises ``optuna.TrialPruned`` out of ``fit`` when the pruner says so.
    """

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass  # never called with limit_val_batches=0; reporting happens at the epoch's end below

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
