"""Evaluate a model on validation and test, each split with its own history excluded.

The tasks (held-out movies and each user's history) cost seconds to build at ML-20M scale, so a
pipeline builds them once with :func:`evaluation_tasks` and passes them to every evaluation.
"""

from __future__ import annotations

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
        split: evaluate(
            scorers[split],
            tasks[split],
            recall_ks=eval_cfg.recall_ks,
            ndcg_ks=eval_cfg.ndcg_ks,
            batch_size=eval_cfg.batch_size,
            progress=progress,
            description=f"{label} {split}",
        )
        for split in SPLITS_EVALUATED
    }


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


def metrics_of(results: dict[str, EvaluationResult]) -> dict[str, dict[str, float]]:
    return {split: result.metrics for split, result in results.items()}
