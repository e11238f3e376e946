import doctest

import numpy as np
import pytest
import torch

from two_tower_recsys.evaluation import metrics
from two_tower_recsys.evaluation.metrics import ndcg_at_k, ranks_of_targets, recall_at_k, summarize

INF = float("inf")


def test_docstring_examples_hold():
    assert doctest.testmod(metrics).failed == 0


def test_rank_counts_strictly_higher_scores():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7]])
    assert ranks_of_targets(scores, torch.tensor([2])).tolist() == [2]  # 0.9 and 0.7 ahead
    assert ranks_of_targets(scores, torch.tensor([1])).tolist() == [0]


def test_ties_count_against_the_model():
    scores = torch.tensor([[0.5, 0.5, 0.5, 0.2]])
    # two OTHER movies tie with the target: both rank ahead of it
    assert ranks_of_targets(scores, torch.tensor([0])).tolist() == [2]
    assert ranks_of_targets(scores, torch.tensor([3])).tolist() == [3]


def test_constant_scorer_is_not_perfect():
    ranks = ranks_of_targets(torch.zeros(4, 100), torch.tensor([0, 10, 50, 99]))
    assert ranks.tolist() == [99, 99, 99, 99]
    assert recall_at_k(ranks.numpy(), 50) == 0.0


def test_excluded_movies_scored_minus_inf_do_not_count():
    scores = torch.tensor([[-INF, -INF, 0.3, 0.1]])
    assert ranks_of_targets(scores, torch.tensor([3])).tolist() == [1]


def test_nan_target_ranks_last():
    scores = torch.tensor([[0.1, float("nan"), 0.3]])
    assert ranks_of_targets(scores, torch.tensor([1])).tolist() == [2]


def test_recall_and_ndcg_by_hand():
    ranks = np.array([0, 1, 9, 10, 49])
    assert recall_at_k(ranks, 1) == pytest.approx(1 / 5)
    assert recall_at_k(ranks, 10) == pytest.approx(3 / 5)
    assert recall_at_k(ranks, 50) == pytest.approx(5 / 5)
    expected_ndcg10 = (1 / np.log2(2) + 1 / np.log2(3) + 1 / np.log2(11)) / 5
    assert ndcg_at_k(ranks, 10) == pytest.approx(expected_ndcg10)
    assert ndcg_at_k(np.array([5]), 5) == 0.0  # rank 5 is outside the top 5


def test_summarize_names_and_order():
    names = list(summarize(np.array([0, 3]), (10, 50, 100), (10, 50)))
    assert names == ["recall@10", "recall@50", "recall@100", "ndcg@10", "ndcg@50"]
