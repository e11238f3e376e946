"""What a person sees while training: one compact bar per epoch, then one summary line.

Lightning's own bars (Rich or TQDM) print every logged metric beside the bar, which wraps over
several lines in an 80-column terminal, and log lines printed meanwhile cut through them. This
bar shows the batch count and the running loss only; it is gone when the epoch's batches are
done, so the validation bar that follows stands alone, and the epoch ends with one short line
(``epoch 3/49: loss 7.3810, val recall@50 0.5649 (best)``), logged through the console handler
(:class:`two_tower_recsys.utils.console.ProgressAwareHandler`) so it never lands inside a bar.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

import lightning as L
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


class EpochProgressBar(ProgressBar):
    """Replaces Lightning's progress bar; add it after the validation callback (it reads the
    epoch's validation metric from ``trainer.callback_metrics`` to print the summary)."""

    def __init__(self, monitor: str, monitor_label: str):
        super().__init__()
        self.monitor, self.monitor_label = monitor, monitor_label
        self.best = -math.inf
        self._enabled = True
        self._bar: Any = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()
        if not self._enabled or not trainer.is_global_zero:
            return
        total = self.total_train_batches
        self._bar = tqdm(
            total=None if math.isinf(total) else int(total),
            desc=epoch_label(trainer),
            unit="batch",
            leave=False,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._bar.set_postfix_str(f"loss {float(loss):.4f}", refresh=False)
        if self._bar.total is not None and self._bar.n >= self._bar.total:
            self._close()  # before the validation bar starts

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        loss = metrics.get("train_loss")
        summary = f"loss {float(loss):.4f}" if loss is not None else "loss -"
        value = metrics.get(self.monitor)
        if value is not None:
            value = float(value)
            improved = value > self.best
            self.best = max(self.best, value)
            summary += f", val {self.monitor_label} {value:.4f}" + (" (best)" if improved else "")
        log.info("%s: %s", epoch_label(trainer), summary)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def epoch_label(trainer: L.Trainer) -> str:
    """``epoch 3/49``: counted from 0 like the logged best epoch, the plots and Lightning."""
    return f"epoch {trainer.current_epoch}/{trainer.max_epochs - 1}"


def progress_callbacks(enabled: bool, monitor: str, monitor_label: str) -> list[L.Callback]:
    """The bar when ``trainer.progress_bar`` is on (Lightning refuses a bar when it is off)."""
    return [EpochProgressBar(monitor, monitor_label)] if enabled else []
