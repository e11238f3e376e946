"""The report of every model evaluated in one run: metrics.json, its plots and its table.

Every model's metrics and intervals, the paired difference of the reference model (the
two-tower) against each other model, the test top-K lists' beyond-accuracy metrics, the results
by segment and the baselines' chosen regularisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from two_tower_recsys.evaluation.beyond_accuracy import beyond_accuracy_metrics
from two_tower_recsys.evaluation.bootstrap import SplitBootstrap
from two_tower_recsys.evaluation.evaluator import EvaluationResult, EvaluationTask
from two_tower_recsys.evaluation.plots import plot_recall_at_k, plot_recall_by_segment
from two_tower_recsys.evaluation.report import (
    BASELINES,
    BEYOND_ACCURACY,
    METRICS_FILE,
    REFIT,
    SEGMENTS,
    record_models,
)
from two_tower_recsys.evaluation.segments import (
    HISTORY_LENGTH,
    MOVIE_POPULARITY,
    history_length_segments,
    movie_popularity_segments,
    popularity_thresholds,
    segment_metrics,
)
from two_tower_recsys.models.interaction_matrix import interaction_matrix
from two_tower_recsys.pipelines.baselines import BaselineRun
from two_tower_recsys.pipelines.evaluation_suite import (
    Tasks,
    bootstrap_on_splits,
    bootstrap_settings,
    metrics_of,
)
from two_tower_recsys.preprocessing.processed import ProcessedDataset
from two_tower_recsys.preprocessing.split import TEST
from two_tower_recsys.settings import AppConfig

RECALL_AT_K_PNG = "recall_at_k_test.png"
RECALL_BY_SEGMENT_PNG = "recall_by_segment_test.png"

Results = dict[str, dict[str, EvaluationResult]]  # model -> split -> result


def results_of(baselines: dict[str, BaselineRun]) -> Results:
    return {name: run.results for name, run in baselines.items()}


def tunings(baselines: dict[str, BaselineRun]) -> dict[str, dict[str, Any] | None]:
    return {name: run.tuning for name, run in baselines.items()}


def refit_records(baselines: dict[str, BaselineRun]) -> dict[str, dict[str, Any] | None]:
    return {name: run.refit for name, run in baselines.items()}


def write_model_report(
    dataset: ProcessedDataset,
    tasks: Tasks,
    results_by_model: Results,
    settings: AppConfig,
    *,
    reference: str | None = None,
    tuning: dict[str, dict[str, Any]] | None = None,
    refits: dict[str, dict[str, Any] | None] | None = None,
) -> tuple[dict[str, Any], dict[str, SplitBootstrap]]:
    """Record every model of this run in metrics.json; ``reference`` is paired with each other model.

    ``refits[model]``: what the model's test scorer was refitted on (``trainer.refit``), or None.
    """
    others = [model for model in results_by_model if model != reference]
    pairs = tuple((reference, other) for other in others) if reference in results_by_model else ()
    bootstrap = bootstrap_on_splits(results_by_model, settings.eval, pairs)
    train = interaction_matrix(dataset.train, dataset.n_users, dataset.n_items)
    users_per_item = train.getnnz(axis=0)
    sections: dict[str, dict[str, Any]] = {
        SEGMENTS: segments_by_model(
            results_by_model, tasks[TEST], train.getnnz(axis=1), users_per_item, settings
        ),
        BASELINES: {model: entry for model, entry in (tuning or {}).items() if entry is not None},
    }
    refitted = {model: entry for model, entry in (refits or {}).items() if entry is not None}
    if refitted:  # without, no empty section: a model evaluated again without a refit loses its entry
        sections[REFIT] = refitted
    if settings.eval.beyond_accuracy_ks:
        sections[BEYOND_ACCURACY] = {
            model: beyond_accuracy_metrics(
                results[TEST].top_items, users_per_item, dataset.n_users, settings.eval.beyond_accuracy_ks
            )
            for model, results in results_by_model.items()
        }
    report = record_models(
        settings.paths.artifacts_dir / METRICS_FILE,
        dataset.stats,
        {model: metrics_of(results) for model, results in results_by_model.items()},
        bootstrap,
        sections,
    )
    return report, bootstrap


def segments_by_model(
    results_by_model: Results,
    task: EvaluationTask,
    history_lengths: np.ndarray,
    users_per_item: np.ndarray,
    settings: AppConfig,
) -> dict[str, dict[str, Any]]:
    """Each model's test Recall@K and NDCG@K by history length and held-out movie popularity."""
    k = settings.eval.segment_k
    metric_names = [f"recall@{k}", f"ndcg@{k}"]
    labels = {
        HISTORY_LENGTH: history_length_segments(history_lengths[task.users]),
        MOVIE_POPULARITY: movie_popularity_segments(users_per_item, task.targets),
    }
    head_min, tail_max = popularity_thresholds(users_per_item)
    note = f"head: >= {head_min} train users, tail: <= {tail_max}"
    return {
        model: {
            "split": TEST,
            "metrics": metric_names,
            "note": note,
            "by": segment_metrics(
                results[TEST].ranks, labels, metric_names, bootstrap_settings(settings.eval)
            ),
        }
        for model, results in results_by_model.items()
    }


def write_comparison_plots(
    report: dict[str, Any], results_by_model: Results, settings: AppConfig
) -> list[Path]:
    """The test Recall@K curve of every model, and Recall@K by segment."""
    plots_dir = settings.paths.plots_dir
    paths = [
        plot_recall_at_k(
            {model: results[TEST].ranks for model, results in results_by_model.items()},
            plots_dir / RECALL_AT_K_PNG,
            bands=bootstrap_settings(settings.eval),
        )
    ]
    if report.get(SEGMENTS):
        paths.append(plot_recall_by_segment(report[SEGMENTS], plots_dir / RECALL_BY_SEGMENT_PNG))
    return paths
