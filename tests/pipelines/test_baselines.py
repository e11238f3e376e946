"""pipelines/baselines.py with trainer.refit: EASE's and ALS's test scorers are fitted on train +
validation with the value chosen on validation, checked against scores computed apart."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from support import TINY_SYNTHETIC, scratch_paths

from two_tower_recsys.models.als import fit_als
from two_tower_recsys.models.interaction_matrix import interaction_matrix
from two_tower_recsys.pipelines.baselines import evaluate_baselines
from two_tower_recsys.pipelines.evaluation_suite import evaluation_tasks
from two_tower_recsys.pipelines.hydra_edge import compose_settings
from two_tower_recsys.preprocessing.prepare import prepare_dataset
from two_tower_recsys.preprocessing.split import TEST, VAL

# Scores of order 1 computed in float32 (EASE's Cholesky, ALS's solves) against float64 or another
# run: a movie within this of the held-out movie's score may rank either side of it.
SCORE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(settings with trainer.refit=true, dataset, tasks) on the tiny synthetic data."""
    root = tmp_path_factory.mktemp("baselines")
    grids = ["eval.ease_l2_grid=[20,500]", "eval.als_regularization_grid=[1,100]"]
    settings = compose_settings([*TINY_SYNTHETIC, *scratch_paths(root), *grids, "trainer.refit=true"])
    dataset = prepare_dataset(settings.data, settings.paths, progress=False)
    return settings, dataset, evaluation_tasks(dataset)


def ease_scores(interactions: sp.csr_matrix, l2: float) -> np.ndarray:
    """EASE in float64 from its definition: X B, B = I - P / diag(P), P = (X^T X + l2 I)^-1."""
    x = interactions.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    weights = np.eye(x.shape[1]) - p / np.diag(p)
    return x @ weights


def ranks_fit(ranks: np.ndarray, scores: np.ndarray, task) -> np.ndarray:
    """Per user: whether the evaluator's rank (movies ahead of or tied with the held-out one, the
    history excluded) is one ``scores`` allows, near-ties within SCORE_TOLERANCE either way."""
    fits = np.empty(len(task.users), dtype=bool)
    history = interaction_matrix(task.history, scores.shape[0], scores.shape[1]).toarray() > 0
    for row, (user, target) in enumerate(zip(task.users, task.targets, strict=True)):
        other = ~history[user]
        other[target] = False
        others, target_score = scores[user][other], scores[user, target]
        fewest = np.count_nonzero(others > target_score + SCORE_TOLERANCE)
        most = np.count_nonzero(others >= target_score - SCORE_TOLERANCE)
        fits[row] = fewest <= ranks[row] <= most
    return fits


def test_ease_and_als_test_scorers_are_refitted_on_train_and_validation(tiny):
    settings, dataset, tasks = tiny
    runs = evaluate_baselines(("ease", "als"), dataset, tasks, settings, progress=False)
    without = dataclasses.replace(settings, trainer=dataclasses.replace(settings.trainer, refit=False))
    selected_on_train = evaluate_baselines(("ease", "als"), dataset, tasks, without, progress=False)
    shape = (dataset.n_users, dataset.n_items)
    train_and_val = interaction_matrix(tasks[TEST].history, *shape)
    train = interaction_matrix(dataset.train, *shape)

    def als_scores(interactions, regularization):
        cfg = settings.eval
        scorer = fit_als(
            interactions,
            factors=cfg.als_factors,
            regularization=regularization,
            iterations=cfg.als_iterations,
            alpha=cfg.als_alpha,
            seed=settings.seed,
        )
        return scorer.score(torch.arange(dataset.n_users)).double().numpy()

    for name, scores_of in (("ease", ease_scores), ("als", als_scores)):
        run, plain = runs[name], selected_on_train[name]
        assert run.tuning == {**plain.tuning, "fit_seconds": run.tuning["fit_seconds"]}  # chosen alike
        assert run.results[VAL].metrics == plain.results[VAL].metrics
        assert run.refit == {"fitted_on": "train+val", "train_rows": tasks[TEST].history.height}
        assert plain.refit is None
        chosen, ranks = run.tuning["chosen"], run.results[TEST].ranks
        assert ranks_fit(ranks, scores_of(train_and_val, chosen), tasks[TEST]).all(), name
        # The check can fail: the train-only fit's scores do not explain the refit's ranks.
        assert not ranks_fit(ranks, scores_of(train, chosen), tasks[TEST]).all(), name
