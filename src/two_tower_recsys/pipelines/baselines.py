"""The classical baselines of every report: popularity, EASE and ALS (``eval.baselines``).

Each is fitted on the train split and scored by the shared evaluator with each split's history
excluded, like the two-tower. EASE's and ALS's regularisation is chosen on validation (the
highest Recall@``trainer.monitor_k`` over the grid, the smaller value on a tie); test only ever
sees the chosen one. With ``trainer.refit`` the chosen value is fitted again on train + validation
for test, as the two-tower is, so that paired differences on test stay fair (popularity reads each
split's history already). EASE is skipped, with one log line, when its item-item matrices would not
fit in ``eval.ease_max_memory_gb``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import scipy.sparse as sp

from two_tower_recsys.evaluation.evaluator import EvaluationResult
from two_tower_recsys.evaluation.metrics import recall_at_k
from two_tower_recsys.models.als import fit_als
from two_tower_recsys.models.ease import EaseScorer, ease_memory_bytes, ease_weights, gram_matrix
from two_tower_recsys.models.interaction_matrix import interaction_matrix
from two_tower_recsys.pipelines.evaluation_suite import (
    SPLITS_EVALUATED,
    Tasks,
    evaluate_popularity,
    evaluate_split,
    refit_record,
)
from two_tower_recsys.preprocessing.processed import ProcessedDataset
from two_tower_recsys.preprocessing.split import TEST, VAL
from two_tower_recsys.retrieval.scorers import Scorer
from two_tower_recsys.settings import AppConfig

log = logging.getLogger(__name__)

POPULARITY, EASE, ALS = "popularity", "ease", "als"
GIB = 1 << 30


@dataclass(frozen=True)
class BaselineRun:
    results: dict[str, EvaluationResult]  # by split
    tuning: dict[str, Any] | None = None  # the grid, its validation scores and the chosen value
    refit: dict[str, Any] | None = None  # what the test scorer was refitted on (trainer.refit)


def evaluate_baselines(
    names: tuple[str, ...], dataset: ProcessedDataset, tasks: Tasks, settings: AppConfig, *, progress: bool
) -> dict[str, BaselineRun]:
    """Every baseline of ``names`` that fits the data, fitted, tuned and evaluated on both splits."""
    runs = {}
    for name in dict.fromkeys(names):
        if name == POPULARITY:
            runs[name] = BaselineRun(
                evaluate_popularity(tasks, dataset.n_items, settings.eval, progress=progress)
            )
        elif name == EASE:
            run = evaluate_ease(dataset, tasks, settings, progress=progress)
            if run is not None:
                runs[name] = run
        elif name == ALS:
            runs[name] = evaluate_als(dataset, tasks, settings, progress=progress)
        else:
            raise ValueError(f"unknown baseline {name!r}")  # settings validate eval.baselines
    return runs


def evaluate_ease(
    dataset: ProcessedDataset, tasks: Tasks, settings: AppConfig, *, progress: bool
) -> BaselineRun | None:
    needed = ease_memory_bytes(dataset.n_items)
    if needed > settings.eval.ease_max_memory_gb * GIB:
        log.warning(
            "EASE skipped: %d movies need about %.1f GB for its item-item matrices, above "
            "eval.ease_max_memory_gb=%g",
            dataset.n_items,
            needed / GIB,
            settings.eval.ease_max_memory_gb,
        )
        return None
    histories = {
        split: interaction_matrix(tasks[split].history, dataset.n_users, dataset.n_items)
        for split in SPLITS_EVALUATED
    }
    gram = gram_matrix(interaction_matrix(dataset.train, dataset.n_users, dataset.n_items))

    def fit(l2: float) -> dict[str, Scorer]:
        weights = ease_weights(gram, l2)  # fitted on train; each split's scores read its history
        return {split: EaseScorer(weights, histories[split]) for split in SPLITS_EVALUATED}

    def refit(l2: float) -> Scorer:  # test's history is train + validation: the refit's data
        return EaseScorer(ease_weights(gram_matrix(histories[TEST]), l2), histories[TEST])

    return tuned(
        EASE,
        "l2",
        settings.eval.ease_l2_grid,
        fit,
        tasks,
        settings,
        progress=progress,
        refit=refit if settings.trainer.refit else None,
    )


def evaluate_als(
    dataset: ProcessedDataset, tasks: Tasks, settings: AppConfig, *, progress: bool
) -> BaselineRun:
    train = interaction_matrix(dataset.train, dataset.n_users, dataset.n_items)
    eval_cfg = settings.eval

    def fitted(interactions: sp.csr_matrix, regularization: float) -> Scorer:
        return fit_als(
            interactions,
            factors=eval_cfg.als_factors,
            regularization=regularization,
            iterations=eval_cfg.als_iterations,
            alpha=eval_cfg.als_alpha,
            seed=settings.seed,
        )

    def fit(regularization: float) -> dict[str, Scorer]:
        return dict.fromkeys(SPLITS_EVALUATED, fitted(train, regularization))

    def refit(regularization: float) -> Scorer:  # test's history is train + validation: the refit's data
        return fitted(
            interaction_matrix(tasks[TEST].history, dataset.n_users, dataset.n_items), regularization
        )

    return tuned(
        ALS,
        "regularization",
        eval_cfg.als_regularization_grid,
        fit,
        tasks,
        settings,
        progress=progress,
        refit=refit if settings.trainer.refit else None,
    )


def tuned(
    name: str,
    parameter: str,
    grid: tuple[float, ...],
    fit: Callable[[float], dict[str, Scorer]],
    tasks: Tasks,
    settings: AppConfig,
    *,
    progress: bool,
    refit: Callable[[float], Scorer] | None = None,
) -> BaselineRun:
    """Fit every value of ``grid``, keep the best on validation, and evaluate only it on test.

    Only the best fit so far is kept, so memory holds at most two fitted models at once.
    ``refit``: the chosen value's test scorer fitted on train + validation (``trainer.refit``).
    """
    selection_k = settings.trainer.monitor_k
    validation: dict[str, float] = {}
    best: tuple[float, float, dict[str, Scorer], EvaluationResult, float] | None = None
    for value in grid:
        started = time.perf_counter()
        scorers = fit(value)
        fit_seconds = time.perf_counter() - started
        result = evaluate_split(scorers[VAL], tasks[VAL], settings.eval, progress=progress, label=name)
        score = recall_at_k(result.ranks, selection_k)
        validation[f"{value:g}"] = score
        log.info(
            "%s %s=%g: validation recall@%d %.4f (fit in %.1f s)",
            name,
            parameter,
            value,
            selection_k,
            score,
            fit_seconds,
        )
        if best is None or score > best[1]:
            best = (value, score, scorers, result, fit_seconds)
        del scorers  # the next fit must not find this one still referenced
    assert best is not None  # the grid is never empty (settings)
    chosen, _, scorers, val_result, fit_seconds = best
    if refit is not None:
        del best, scorers  # free the chosen fit before the refit builds its own
        test_scorer = refit(chosen)
    else:
        test_scorer = scorers[TEST]
    test_result = evaluate_split(test_scorer, tasks[TEST], settings.eval, progress=progress, label=name)
    tuning = {
        "parameter": parameter,
        "grid": list(grid),
        "selected_by": f"recall@{selection_k}",
        "validation": validation,
        "chosen": chosen,
        "fit_seconds": fit_seconds,
    }
    return BaselineRun(
        {VAL: val_result, TEST: test_result}, tuning, refit_record(tasks) if refit is not None else None
    )
