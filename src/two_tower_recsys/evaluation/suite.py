"""Evaluate a model on validation and test, each split with its own history excluded."""

from __future__ import annotations

from two_tower_recsys.evaluation.evaluator import EvaluationResult, evaluate, evaluation_task
from two_tower_recsys.models.popularity import fit_popularity
from two_tower_recsys.preprocessing.processed import ProcessedDataset
from two_tower_recsys.preprocessing.split import TEST, VAL
from two_tower_recsys.retrieval.scorers import Scorer
from two_tower_recsys.settings import EvalConfig

SPLITS_EVALUATED = (VAL, TEST)


def evaluate_on_splits(
    scorers: dict[str, Scorer], dataset: ProcessedDataset, eval_cfg: EvalConfig, *, progress: bool, label: str
) -> dict[str, EvaluationResult]:
    """``scorers[split]`` evaluated on ``split`` for validation and test."""
    return {
        split: evaluate(
            scorers[split],
            evaluation_task(dataset, split),
            recall_ks=eval_cfg.recall_ks,
            ndcg_ks=eval_cfg.ndcg_ks,
            batch_size=eval_cfg.batch_size,
            progress=progress,
            description=f"{label} {split}",
        )
        for split in SPLITS_EVALUATED
    }


def evaluate_popularity(
    dataset: ProcessedDataset, eval_cfg: EvalConfig, *, progress: bool
) -> dict[str, EvaluationResult]:
    """Popularity fitted on each split's history: train for validation, train + val for test."""
    scorers = {
        split: fit_popularity(evaluation_task(dataset, split).history, dataset.n_items)
        for split in SPLITS_EVALUATED
    }
    return evaluate_on_splits(scorers, dataset, eval_cfg, progress=progress, label="popularity")


def evaluate_scorer(
    scorer: Scorer, dataset: ProcessedDataset, eval_cfg: EvalConfig, *, progress: bool, label: str
) -> dict[str, EvaluationResult]:
    """A model whose scores do not depend on the split (e.g. trained embeddings)."""
    return evaluate_on_splits(
        dict.fromkeys(SPLITS_EVALUATED, scorer), dataset, eval_cfg, progress=progress, label=label
    )


def metrics_of(results: dict[str, EvaluationResult]) -> dict[str, dict[str, float]]:
    return {split: result.metrics for split, result in results.items()}
