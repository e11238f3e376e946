"""Fit the two-tower model with Lightning: seeded, early-stopped and checkpointed on validation, or
(a refit on data that includes validation) trained for a fixed number of epochs."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import Logger

from two_tower_recsys.evaluation.evaluator import EvaluationTask, evaluation_task
from two_tower_recsys.models.components.content import ContentVocabulary, encode_movies
from two_tower_recsys.models.components.user_encoders import user_encoder_class
from two_tower_recsys.models.popularity import popularity_counts
from two_tower_recsys.preprocessing.processed import ProcessedDataset
from two_tower_recsys.preprocessing.split import VAL
from two_tower_recsys.settings import EvalConfig, ModelConfig, TrainerConfig
from two_tower_recsys.training.checkpoint import AtomicCheckpointIO, load_two_tower_checkpoint
from two_tower_recsys.training.module import TwoTowerModule
from two_tower_recsys.training.pairs import epoch_pairs_loader
from two_tower_recsys.training.progress import progress_callbacks
from two_tower_recsys.training.sequences import SequenceTraining, sequence_training
from two_tower_recsys.training.validation import EpochRecord, RetrievalValidation, logged_name
from two_tower_recsys.training.weight_average import ValidatedWeightAverage
from two_tower_recsys.utils.allocator import keep_freed_memory_for_reuse

log = logging.getLogger(__name__)


class _WithoutAdvertising(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip: For seamless cloud logging" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_WithoutAdvertising())
# Raised inside Lightning 2.6 itself on every fit with torch 2.13; nothing for us to change.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
warnings.filterwarnings("ignore", message=r".*torch.distributed.nn.functional.all_gather is deprecated.*")
# The run directory holds the checkpoints a resume continues from: not being empty is the point.
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


@dataclass
class FitResult:
    # With the best checkpoint's weights, or a fixed-epochs fit's last (on the global-zero process).
    module: TwoTowerModule
    best_checkpoint: Path  # the weights kept: best.ckpt, or a fixed-epochs fit's last.ckpt
    best_epoch: int  # the kept weights' epoch, counted from 0
    history: list[EpochRecord]  # per-epoch validation (none in a fixed-epochs fit)
    is_global_zero: bool


class ResumableEarlyStopping(EarlyStopping):
    """Early stopping whose resumed state keeps the configured patience, and which ends at once a
    resumed fit that had already stopped (Lightning saves the wait count, not ``should_stop``)."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        configured = self.patience
        super().load_state_dict(state_dict)
        self.patience = configured

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.wait_count >= self.patience:
            trainer.should_stop = True


def monitored_metric(trainer_cfg: TrainerConfig) -> str:
    return logged_name(f"recall@{trainer_cfg.monitor_k}", "val")


def fit_two_tower(
    dataset: ProcessedDataset,
    *,
    model_cfg: ModelConfig,
    trainer_cfg: TrainerConfig,
    eval_cfg: EvalConfig,
    seed: int,
    checkpoint_dir: Path,
    resume_from: Path | None = None,
    loggers: list[Logger] | None = None,
    validation_task: EvaluationTask | None = None,
    callbacks: Sequence[L.Callback] = (),
    fixed_epochs: int | None = None,
) -> FitResult:
    """Train, keeping ``best.ckpt`` and ``last.ckpt`` (every epoch) in ``checkpoint_dir``.

    ``resume_from``: a ``last.ckpt`` of an interrupted fit with the same data, model and seed; the
    fit continues after its epoch (weights, optimizer, epoch and so the pair sample, early
    stopping, best checkpoint and validation history). ``validation_task`` saves rebuilding it
    when the caller already has one; ``callbacks`` run after the built-in ones (to watch the fit).
    ``fixed_epochs``: train exactly that many epochs and validate nothing (no early stopping, no
    ``best.ckpt``): for a refit on data that includes validation, whose figures would mean nothing;
    the result holds the last epoch's weights (the average's with ``trainer.ema_decay``).
    """
    keep_freed_memory_for_reuse()
    L.seed_everything(seed, workers=True, verbose=False)
    train = dataset.train
    # What the user tower reads decides what it trains on: histories (next-movie prediction at
    # every position of each user's windows) or user indices ((user, movie) pairs).
    reads_histories = user_encoder_class(model_cfg.user_tower).reads_histories
    sequences = sequence_training(dataset, model_cfg, trainer_cfg, seed) if reads_histories else None
    vocabulary = ContentVocabulary.from_movies(model_cfg.item_features, dataset.titles)
    module = TwoTowerModule.from_settings(
        dataset.n_users,
        dataset.n_items,
        model_cfg,
        trainer_cfg,
        item_counts=popularity_counts(train, dataset.n_items) if sequences is None else sequences.item_counts,
        content_vocabulary=vocabulary.as_dict() if model_cfg.reads_content else None,
        seed=seed,
    )
    if model_cfg.reads_content:  # the training catalogue's tokens, in item_idx order
        module.net.item_tower.set_tokens(encode_movies(dataset.titles.sort("item_idx"), vocabulary))
    if sequences is not None:
        loader = sequences.loader
    else:
        loader = epoch_pairs_loader(
            train.get_column("user_idx").to_numpy(),
            train.get_column("item_idx").to_numpy(),
            max_pairs=trainer_cfg.max_interactions,
            batch_size=trainer_cfg.batch_size,
            seed=seed,
        )
    averaging = ValidatedWeightAverage(trainer_cfg.ema_decay) if trainer_cfg.ema_decay else None
    selection = (
        ValidationSelection(
            dataset, trainer_cfg, eval_cfg, checkpoint_dir, validation_task, sequences, averaging
        )
        if fixed_epochs is None
        else None
    )
    # Every epoch's state, for a resume. Not save_last=True: Lightning 2.6 writes "last" only in
    # epochs that also wrote a best checkpoint, so a resume would redo every epoch since the best.
    last = ModelCheckpoint(
        dirpath=checkpoint_dir, filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    monitor = monitored_metric(trainer_cfg)
    # Order matters: validation must log the monitored metric before early stopping reads it, and
    # last.ckpt comes after best.ckpt so that it records the new best.
    callbacks = [
        *([averaging] if averaging is not None else []),
        *(selection.callbacks if selection is not None else []),
        *progress_callbacks(trainer_cfg.progress_bar, monitor, f"recall@{trainer_cfg.monitor_k}"),
        *([selection.checkpoint] if selection is not None else []),
        last,
        *callbacks,
    ]
    trainer = L.Trainer(
        max_epochs=trainer_cfg.max_epochs if fixed_epochs is None else fixed_epochs,
        accelerator=trainer_cfg.accelerator,
        devices=trainer_cfg.devices,
        num_nodes=trainer_cfg.num_nodes,
        strategy=trainer_cfg.strategy,
        deterministic=trainer_cfg.deterministic,
        callbacks=callbacks,
        logger=loggers or False,
        enable_progress_bar=trainer_cfg.progress_bar,
        enable_model_summary=False,
        limit_train_batches=trainer_cfg.limit_train_batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # the pair sampler shards each epoch itself
        log_every_n_steps=max(1, min(50, len(loader))),
        plugins=[AtomicCheckpointIO()],
    )
    trainer.fit(module, train_dataloaders=loader, ckpt_path=resume_from, weights_only=True)
    if selection is None:
        return final_weights(trainer, Path(last.best_model_path), module)
    return selection.result(trainer, module)


def final_weights(trainer: L.Trainer, last_path: Path, module: TwoTowerModule) -> FitResult:
    """A fit of fixed length ends with its last epoch's weights (the average's, when averaging)."""
    if trainer.is_global_zero:
        module = load_two_tower_checkpoint(last_path)  # holds the averaged weights as its state_dict
    log.info("trained %d epochs without validation; keeping the last", trainer.current_epoch)
    return FitResult(module, last_path, trainer.current_epoch - 1, [], trainer.is_global_zero)


class ValidationSelection:
    """Validation after every epoch, early stopping and ``best.ckpt``: how a fit chooses its epoch."""

    def __init__(
        self,
        dataset: ProcessedDataset,
        trainer_cfg: TrainerConfig,
        eval_cfg: EvalConfig,
        checkpoint_dir: Path,
        validation_task: EvaluationTask | None,
        sequences: SequenceTraining | None,
        averaging: ValidatedWeightAverage | None,
    ):
        self.monitor_k = trainer_cfg.monitor_k
        self.monitor = monitored_metric(trainer_cfg)
        self.validation = RetrievalValidation(
            validation_task if validation_task is not None else evaluation_task(dataset, VAL),
            recall_ks=tuple(sorted({*eval_cfg.recall_ks, trainer_cfg.monitor_k})),
            ndcg_ks=eval_cfg.ndcg_ks,
            batch_size=eval_cfg.batch_size,
            progress=trainer_cfg.progress_bar,
            scorer_of=sequences.validation_scorer if sequences is not None else None,
            scored_module=averaging.scored if averaging is not None else None,
        )
        if trainer_cfg.monitor_k >= dataset.n_items:
            log.warning(
                "trainer.monitor_k=%d >= the catalogue's %d movies: %s is 1.0 every epoch, so early "
                "stopping and checkpointing cannot tell epochs apart; set a smaller trainer.monitor_k",
                trainer_cfg.monitor_k,
                dataset.n_items,
                self.monitor,
            )
        self.checkpoint = ModelCheckpoint(
            dirpath=checkpoint_dir,
            filename="best",
            monitor=self.monitor,
            mode="max",
            save_top_k=1,
            enable_version_counter=False,  # always best.ckpt, overwritten in place
        )
        self.callbacks = [
            self.validation,
            ResumableEarlyStopping(
                monitor=self.monitor,
                mode="max",
                patience=trainer_cfg.early_stopping_patience,
                check_on_train_epoch_end=True,
            ),
        ]

    def result(self, trainer: L.Trainer, module: TwoTowerModule) -> FitResult:
        best_path = Path(self.checkpoint.best_model_path)
        if trainer.is_global_zero:
            module = load_two_tower_checkpoint(best_path)
        history = self.validation.history
        best_epoch = max(history, key=lambda record: record.metrics[f"recall@{self.monitor_k}"]).epoch
        score = float(self.checkpoint.best_model_score or 0.0)
        log.info("best epoch %d: %s = %.4f", best_epoch, self.monitor, score)
        return FitResult(module, best_path, best_epoch, history, trainer.is_global_zero)
