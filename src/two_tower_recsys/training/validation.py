"""Per-epoch validation through the shared evaluator, as a Lightning callback.

Under DDP each process ranks its share of the validation users and the ranks are gathered,
so the metrics are exactly those of a single-process evaluation. A single process goes through
the same gathering (Lightning's single-device gather returns its input), so every fit, tests
included, runs the code that DDP runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch

from two_tower_recsys.evaluation.evaluator import EvaluationTask, compute_ranks
from two_tower_recsys.evaluation.metrics import summarize
from two_tower_recsys.retrieval.scorers import Scorer

log = logging.getLogger(__name__)


def logged_name(metric: str, prefix: str) -> str:
    """MLflow metric names cannot hold '@': recall@50 -> val_recall_at_50."""
    return f"{prefix}_{metric.replace('@', '_at_')}"


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    metrics: dict[str, float] = field(default_factory=dict)


class RetrievalValidation(L.Callback):
    """Validates after every training epoch; its history is saved in checkpoints (and resumed)."""

    def __init__(
        self,
        task: EvaluationTask,
        *,
        recall_ks: tuple[int, ...],
        ndcg_ks: tuple[int, ...],
        batch_size: int,
        progress: bool,
        scorer_of: Callable[[L.LightningModule], Scorer] | None = None,
        scored_module: Callable[[L.LightningModule], L.LightningModule] | None = None,
    ):
        """``scorer_of``: the module's scorer for this task (default ``module.scorer()``);
        ``scored_module``: which module to score, given the trained one (default: itself; a
        weight average gives its averaged copy)."""
        self.task = task
        self.scorer_of = scorer_of or (lambda module: module.scorer())
        self.scored_module = scored_module or (lambda module: module)
        self.recall_ks, self.ndcg_ks = recall_ks, ndcg_ks
        self.batch_size, self.progress = batch_size, progress
        self.history: list[EpochRecord] = []

    def state_dict(self) -> dict[str, Any]:
        return {"history": [asdict(record) for record in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [EpochRecord(**record) for record in state_dict["history"]]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        shard = self.task.shard(trainer.global_rank, trainer.world_size)
        ranks = compute_ranks(
            self.scorer_of(self.scored_module(pl_module)),
            shard,
            batch_size=self.batch_size,
            progress=self.progress and trainer.is_global_zero,
            description=f"validation epoch {trainer.current_epoch}",
        )
        ranks = gather_ranks(trainer, ranks, len(self.task.users))
        metrics = summarize(ranks, self.recall_ks, self.ndcg_ks)
        logged = {logged_name(name, "val"): value for name, value in metrics.items()}
        for name, value in logged.items():
            # For early stopping, checkpointing and the progress bar. The value is already global
            # (gathered ranks); sync_dist averages identical copies.
            pl_module.log(name, value, on_epoch=True, prog_bar="recall" in name, sync_dist=True, logger=False)
        loss = trainer.callback_metrics.get("train_loss")  # the epoch's mean, from the module
        if loss is not None:
            logged["train_loss"] = float(loss)
        # Lightning hands epoch-end metrics to the loggers only after every on_train_epoch_end
        # hook, so after ModelCheckpoint has written last.ckpt: a run killed in between resumed
        # past an epoch whose metrics never reached MLflow. Sent now, they are stored first, at
        # the step Lightning would give them (loggers write on global rank 0 only).
        for logger in trainer.loggers:
            logger.log_metrics(logged, step=max(trainer.global_step - 1, 0))
        record = EpochRecord(
            trainer.current_epoch, float(loss) if loss is not None else float("nan"), metrics
        )
        self.history.append(record)
        if trainer.is_global_zero and not self.progress:
            # One line per epoch, so runs without progress bars (logs, CI) still show progress;
            # with them, the progress bar prints a shorter one (training/progress.py).
            log.info(
                "epoch %d: train_loss %.4f, validation %s",
                record.epoch,
                record.train_loss,
                ", ".join(f"{name} {value:.4f}" for name, value in metrics.items()),
            )


def gather_ranks(trainer: L.Trainer, local_ranks: np.ndarray, total: int) -> np.ndarray:
    """Collect every process's ranks (shards differ in length by at most one user).

    The padded tensor lives on the module's device: NCCL, the GPU backend, gathers only CUDA
    tensors (gloo, on CPU, takes either).
    """
    width = -(-total // trainer.world_size)
    padded = torch.full((width,), -1, dtype=torch.int64, device=trainer.lightning_module.device)
    padded[: len(local_ranks)] = torch.from_numpy(local_ranks)
    gathered = trainer.strategy.all_gather(padded).reshape(-1).cpu().numpy()
    return gathered[gathered >= 0]
