"""``two-tower train``: the whole job, from raw data to the served index.

data (downloaded only if missing) -> preprocessing -> popularity baseline -> two-tower training
(Lightning, validated every epoch) -> test metrics of the best epoch -> artifacts, plots,
metrics.json, all logged to MLflow. ``model=popularity`` stops after the baseline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from lightning.pytorch.utilities import rank_zero_only

from two_tower_recsys.artifacts.store import write_index
from two_tower_recsys.evaluation.evaluator import EvaluationResult
from two_tower_recsys.evaluation.plots import plot_learning_curves, plot_recall_at_k
from two_tower_recsys.evaluation.report import METRICS_FILE, format_table, update_metrics_file
from two_tower_recsys.models.popularity import popularity_counts
from two_tower_recsys.pipelines.evaluation_suite import (
    Tasks,
    evaluate_on_splits,
    evaluate_popularity,
    evaluation_tasks,
    metrics_of,
)
from two_tower_recsys.pipelines.hydra_edge import hydra_entry
from two_tower_recsys.pipelines.trained_scorers import published_scorer, split_scorers
from two_tower_recsys.preprocessing.prepare import prepare_dataset
from two_tower_recsys.preprocessing.processed import ProcessedDataset
from two_tower_recsys.preprocessing.split import TEST, VAL
from two_tower_recsys.retrieval.scorers import EmbeddingScorer
from two_tower_recsys.settings import AppConfig
from two_tower_recsys.tracking.mlflow_tracking import TrainingRun, git_commit, resolve_tracking_target
from two_tower_recsys.training.fit import FitResult, fit_two_tower
from two_tower_recsys.training.validation import logged_name

log = logging.getLogger(__name__)

POPULARITY, TWO_TOWER = "popularity", "two_tower"
LEARNING_CURVES_PNG = "learning_curves.png"
RECALL_AT_K_PNG = "recall_at_k_test.png"


def run(settings: AppConfig) -> None:
    dataset = prepare_dataset(settings.data, settings.paths, progress=settings.trainer.progress_bar)
    if rank_zero_only.rank != 0:
        # A DDP worker started by Lightning's launcher: it only trains.
        with checkpoint_directory(settings) as checkpoint_dir:
            fit_model(dataset, settings, None, checkpoint_dir)
        return
    # Built once: popularity, per-epoch validation and the final evaluation all use them.
    tasks = evaluation_tasks(dataset)
    popularity = evaluate_popularity(
        tasks, dataset.n_items, settings.eval, progress=settings.trainer.progress_bar
    )
    report = update_metrics_file(
        settings.paths.artifacts_dir / METRICS_FILE, dataset.stats, POPULARITY, metrics_of(popularity)
    )
    if settings.model.name == POPULARITY:
        print(format_table(report))
        return
    tracking = start_tracking(settings, dataset) if settings.logging.enabled else None
    try:
        report = train_and_publish(dataset, tasks, settings, popularity, tracking)
    except BaseException:
        if tracking is not None:
            tracking.finish("FAILED")
        raise
    if tracking is not None:
        tracking.finish()
    print(format_table(report))


def start_tracking(settings: AppConfig, dataset: ProcessedDataset) -> TrainingRun:
    target = resolve_tracking_target(settings.logging.mlflow)
    tracking = TrainingRun(
        target, settings.logging.mlflow.experiment_name, run_name=f"{TWO_TOWER}-{dataset.stats['name']}"
    )
    tracking.log_params(_plain(dataclasses.asdict(settings)))
    tracking.set_tags(
        {
            "git_commit": git_commit(Path(__file__).parent),
            "dataset": dataset.stats["name"],
            "dataset_md5": dataset.stats["input_md5"],
            **{f"dataset.{key}": value for key, value in dataset.stats.items()},
        }
    )
    return tracking


@contextlib.contextmanager
def checkpoint_directory(settings: AppConfig) -> Iterator[Path]:
    """Epoch checkpoints live beside the artifacts until the best one is published, then go."""
    parent = settings.paths.artifacts_dir.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".checkpoints-", dir=parent) as directory:
        yield Path(directory)


def fit_model(
    dataset: ProcessedDataset,
    settings: AppConfig,
    tracking: TrainingRun | None,
    checkpoint_dir: Path,
    tasks: Tasks | None = None,
) -> FitResult:
    return fit_two_tower(
        dataset,
        model_cfg=settings.model,
        trainer_cfg=settings.trainer,
        eval_cfg=settings.eval,
        seed=settings.seed,
        checkpoint_dir=checkpoint_dir,
        loggers=[tracking.lightning_logger()] if tracking is not None else None,
        validation_task=tasks[VAL] if tasks is not None else None,
    )


def train_and_publish(
    dataset: ProcessedDataset,
    tasks: Tasks,
    settings: AppConfig,
    popularity: dict[str, EvaluationResult],
    tracking: TrainingRun | None,
) -> dict[str, Any]:
    with checkpoint_directory(settings) as checkpoint_dir:
        fit = fit_model(dataset, settings, tracking, checkpoint_dir, tasks)
        manifest = publish_index(dataset, settings, fit, published_scorer(fit.module, dataset))
    two_tower = evaluate_on_splits(
        split_scorers(fit.module, dataset),
        tasks,
        settings.eval,
        progress=settings.trainer.progress_bar,
        label=TWO_TOWER,
    )
    log.info("wrote artifacts to %s (%d files)", settings.paths.artifacts_dir, len(manifest["files"]))
    metrics_path = settings.paths.artifacts_dir / METRICS_FILE
    report = update_metrics_file(metrics_path, dataset.stats, TWO_TOWER, metrics_of(two_tower))
    plots = write_plots(fit, popularity, two_tower, settings)
    if tracking is not None:
        log_results(tracking, fit, {TWO_TOWER: two_tower, POPULARITY: popularity}, [*plots, metrics_path])
    return report


def publish_index(
    dataset: ProcessedDataset, settings: AppConfig, fit: FitResult, scorer: EmbeddingScorer
) -> dict:
    """The offline indexing stage: embeddings, lookups and filters that inference loads."""
    all_positives = pl.concat([dataset.train, dataset.val, dataset.test]).select("user_idx", "item_idx")
    return write_index(
        settings.paths.artifacts_dir,
        checkpoint=fit.best_checkpoint,
        user_embeddings=scorer.user_embeddings,
        item_embeddings=scorer.item_embeddings_t.T,
        temperature=settings.model.temperature,
        user_ids=dataset.user_ids,
        item_ids=dataset.item_ids,
        titles=dataset.titles,
        seen_pairs=all_positives,
        popularity=popularity_counts(all_positives, dataset.n_items),
        provenance={
            "config": _plain(dataclasses.asdict(settings)),
            "dataset": dataset.stats,
            "best_epoch": fit.best_epoch,
        },
    )


def log_results(
    tracking: TrainingRun,
    fit: FitResult,
    results_by_model: dict[str, dict[str, EvaluationResult]],
    files: list[Path],
) -> None:
    for model, results in results_by_model.items():
        for split, result in results.items():
            tracking.log_metrics(
                {logged_name(name, f"{split}_{model}"): value for name, value in result.metrics.items()}
            )
    tracking.log_metrics({"best_epoch": fit.best_epoch})
    for path in files:
        tracking.log_artifact(path)


def write_plots(
    fit: FitResult,
    popularity: dict[str, EvaluationResult],
    two_tower: dict[str, EvaluationResult],
    settings: AppConfig,
) -> list[Path]:
    plots_dir = settings.paths.plots_dir
    monitor = f"recall@{settings.trainer.monitor_k}"
    curves = {
        name: [record.metrics[name] for record in fit.history]
        for name in (monitor, f"ndcg@{settings.trainer.monitor_k}")
        if all(name in record.metrics for record in fit.history)
    }
    return [
        plot_learning_curves(
            [record.epoch for record in fit.history],
            [record.train_loss for record in fit.history],
            curves,
            plots_dir / LEARNING_CURVES_PNG,
            best_epoch=fit.best_epoch,
        ),
        plot_recall_at_k(
            {TWO_TOWER: two_tower[TEST].ranks, POPULARITY: popularity[TEST].ranks},
            plots_dir / RECALL_AT_K_PNG,
        ),
    ]


def _plain(value: Any) -> Any:
    """asdict() output with Paths and tuples made JSON-friendly."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


main = hydra_entry(run)

if __name__ == "__main__":
    main()
