"""EASE: the Gram matrix and the closed form against a float64 reference, and the memory cap."""

import logging

import numpy as np
import polars as pl
import pytest
import torch

from two_tower_recsys.models.ease import EaseScorer, ease_memory_bytes, ease_weights, gram_matrix
from two_tower_recsys.models.interaction_matrix import interaction_matrix


def random_interactions(n_users=60, n_items=25, seed=0):
    rng = np.random.default_rng(seed)
    users, items = np.nonzero(rng.random((n_users, n_items)) < 0.3)
    return pl.DataFrame({"user_idx": users, "item_idx": items}), n_users, n_items


def test_the_matrix_is_binary_and_counts_a_duplicate_once():
    pairs = pl.DataFrame({"user_idx": [0, 0, 1], "item_idx": [2, 2, 0]})
    assert interaction_matrix(pairs, 2, 3).toarray().tolist() == [[0, 0, 1], [1, 0, 0]]


def test_gram_counts_co_occurrences_in_column_blocks(monkeypatch):
    pairs, n_users, n_items = random_interactions()
    matrix = interaction_matrix(pairs, n_users, n_items)
    dense = matrix.toarray().astype(np.float64)
    monkeypatch.setattr("two_tower_recsys.models.ease.GRAM_BLOCK_ELEMENTS", 3 * n_items)  # 3 columns a block
    assert np.array_equal(gram_matrix(matrix).numpy(), dense.T @ dense)


def test_weights_match_the_closed_form_and_never_explain_a_movie_by_itself():
    pairs, n_users, n_items = random_interactions()
    dense = interaction_matrix(pairs, n_users, n_items).toarray().astype(np.float64)
    l2 = 5.0
    inverse = np.linalg.inv(dense.T @ dense + l2 * np.eye(n_items))
    expected = np.eye(n_items) - inverse / np.diag(inverse)
    gram = gram_matrix(interaction_matrix(pairs, n_users, n_items))
    before = gram.clone()
    weights = ease_weights(gram, l2)
    assert torch.equal(gram, before)  # shared by the grid: left unchanged
    assert weights.dtype == torch.float32
    np.testing.assert_allclose(weights.numpy(), expected, atol=1e-4)
    assert torch.all(weights.diagonal() == 0)
    with pytest.raises(ValueError, match="l2"):
        ease_weights(gram, 0.0)


def test_scores_are_the_history_rows_times_the_weights():
    pairs, n_users, n_items = random_interactions()
    histories = interaction_matrix(pairs, n_users, n_items)
    weights = ease_weights(gram_matrix(histories), 5.0)
    users = torch.tensor([3, 0, 41])
    expected = torch.from_numpy(histories[users.numpy()].toarray()) @ weights
    torch.testing.assert_close(EaseScorer(weights, histories).score(users), expected, atol=1e-5, rtol=1e-5)


def test_memory_is_four_item_item_matrices():
    assert ease_memory_bytes(27_278) == 4 * 27_278**2 * 4  # ML-20M: 11.9 GB


def test_ease_is_skipped_with_one_log_line_when_it_would_not_fit(caplog):
    from two_tower_recsys.pipelines.baselines import evaluate_ease
    from two_tower_recsys.pipelines.hydra_edge import compose_settings

    settings = compose_settings(["data=synthetic", "eval.ease_max_memory_gb=0.000001"])

    class Dataset:  # only its size is read before EASE is skipped
        n_items = 1000

    with caplog.at_level(logging.WARNING):
        assert evaluate_ease(Dataset(), {}, settings, progress=False) is None
    (record,) = caplog.records
    assert "EASE skipped: 1000 movies need about" in record.getMessage()
    assert "eval.ease_max_memory_gb=1e-06" in record.getMessage()
