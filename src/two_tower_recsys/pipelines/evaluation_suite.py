"""Evaluate a model on validation and test, each split with its own history excluded.

The tasks (held-out movies and each user's history) cost seconds to build at ML-20M scale, so a
pipeline builds them once with :func:`evaluation_tasks` and passes them to every evaluation.
"""

from __future__ import annotations

from typing import Any

from two_tower_recsys.evaluation.bootstrap import BootstrapSettings, SplitBootstrap, bootstrap_metrics
from two_tower_recsys.evaluation.evaluator import EvaluationResult, EvaluationTask, evaluate, evaluation_task
from two_tower_recsys.models.popularity import fit_popularity
from two_tower_recsys.preprocessing.processed import ProcessedDataset
from two_tower_recsys.preprocessing.split import TEST, VAL
from two_tower_recsys.retrieval.scorers import Scorer
from two_tower_recsys.settings import EvalConfig

SPLITS_EVALUATED = (VAL, TEST)
Tasks = dict[str, EvaluationTask]


def evaluation_tasks(dataset: ProcessedDataset) -> Tasks:
    return {split: evaluation_task(dataset, split) for split in SPLITS_EVALUATED}


def evaluate_on_splits(
    scorers: dict[str, Scorer], tasks: Tasks, eval_cfg: EvalConfig, *, progress: bool, label: str
) -> dict[str, EvaluationResult]:
    """``scorers[split]`` evaluated on ``tasks[split]`` for validation and test."""
    return {
        split: evaluate_split(scorers[split], tasks[split], eval_cfg, progress=progress, label=label)
        for split in SPLITS_EVALUATED
    }


def evaluate_split(
    scorer: Scorer, task: EvaluationTask, eval_cfg: EvalConfig, *, progress: bool, label: str
) -> EvaluationResult:
    """One split; on test each user's top-K list is kept too, for the beyond-accuracy metrics."""
    return evaluate(
        scorer,
        task,
        recall_ks=eval_cfg.recall_ks,
        ndcg_ks=eval_cfg.ndcg_ks,
        batch_size=eval_cfg.batch_size,
        progress=progress,
        description=f"{label} {task.split}",
        top_k=max(eval_cfg.beyond_accuracy_ks, default=0) if task.split == TEST else 0,
    )


def evaluate_popularity(
    tasks: Tasks, n_items: int, eval_cfg: EvalConfig, *, progress: bool
) -> dict[str, EvaluationResult]:
    """Popularity fitted on each split's history: train for validation, train + val for test."""
    scorers = {split: fit_popularity(tasks[split].history, n_items) for split in SPLITS_EVALUATED}
    return evaluate_on_splits(scorers, tasks, eval_cfg, progress=progress, label="popularity")


def evaluate_scorer(
    scorer: Scorer, tasks: Tasks, eval_cfg: EvalConfig, *, progress: bool, label: str
) -> dict[str, EvaluationResult]:
    """A model whose scores do not depend on the split (e.g. trained embeddings)."""
    return evaluate_on_splits(
        dict.fromkeys(SPLITS_EVALUATED, scorer), tasks, eval_cfg, progress=progress, label=label
    )


def refit_record(tasks: Tasks, **details: Any) -> dict[str, Any]:
    """metrics.json's entry for a model whose test scorer was refitted on train + validation
    (test's history, so its rows are what the refit trained on)."""
    return {"fitted_on": "train+val", "train_rows": tasks[TEST].history.height, **details}


def metrics_of(results: dict[str, EvaluationResult]) -> dict[str, dict[str, float]]:
    return {split: result.metrics for split, result in results.items()}


def bootstrap_settings(eval_cfg: EvalConfig) -> BootstrapSettings:
    return BootstrapSettings(
        n_resamples=eval_cfg.bootstrap_resamples, seed=eval_cfg.bootstrap_seed, confidence=eval_cfg.confidence
    )


def bootstrap_on_splits(
    results_by_model: dict[str, dict[str, EvaluationResult]],
    eval_cfg: EvalConfig,
    pairs: tuple[tuple[str, str], ...] = (),
) -> dict[str, SplitBootstrap]:
    """Per split: every model's intervals and each pair's paired difference, over the same users.

    The models must have been evaluated in this process on the same tasks: a paired difference
    needs both models' rank of every user.
    """
    settings = bootstrap_settings(eval_cfg)
    bootstraps = {}
    for split in SPLITS_EVALUATED:
        by_model = {model: results[split] for model, results in results_by_model.items()}
        metric_names = list(next(iter(by_model.values())).metrics)
        bootstraps[split] = bootstrap_metrics(
            {model: result.ranks for model, result in by_model.items()}, metric_names, settings, pairs
        )
    return bootstraps
