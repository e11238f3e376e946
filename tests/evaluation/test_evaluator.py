import numpy as np
import polars as pl
import pytest
import torch

from two_tower_recsys.evaluation.evaluator import (
    EvaluationTask,
    evaluate,
    evaluation_task,
    history_for,
)
from two_tower_recsys.preprocessing.processed import ProcessedDataset
from two_tower_recsys.retrieval.scorers import PopularityScorer
from two_tower_recsys.retrieval.seen import SeenItems


class FixedScorer:
    """Scores from a fixed user x item matrix."""

    def __init__(self, matrix):
        self.matrix = torch.tensor(matrix, dtype=torch.float32)

    @property
    def n_items(self):
        return self.matrix.shape[1]

    def score(self, users):
        return self.matrix[users].clone()


def frame(pairs):
    users, items = zip(*pairs, strict=True) if pairs else ((), ())
    return pl.DataFrame(
        {
            "user_idx": np.array(users, dtype=np.int32),
            "item_idx": np.array(items, dtype=np.int32),
            "timestamp": np.zeros(len(users), dtype=np.int64),
            "rating": np.full(len(users), 5.0, dtype=np.float32),
        }
    )


def make_task(users, targets, history_pairs, n_users):
    history = frame(history_pairs).select("user_idx", "item_idx")
    seen = SeenItems.from_pairs(
        history.get_column("user_idx").to_numpy(),
        history.get_column("item_idx").to_numpy(),
        n_users,
    )
    return EvaluationTask("val", np.array(users), np.array(targets), history, seen)


def test_hand_computed_ranks_with_ties_and_exclusions():
    scorer = FixedScorer(
        [
            [5.0, 4.0, 4.0, 3.0, 1.0],  # target 2; item 0 seen; item 1 ties -> rank 1
            [1.0, 1.0, 1.0, 1.0, 1.0],  # target 3; nothing seen; 4 others tie -> rank 4
            [0.1, 0.9, 0.8, 0.7, 0.2],  # target 4; items 1, 2 seen; only item 3 ahead -> rank 1
        ]
    )
    task = make_task([0, 1, 2], [2, 3, 4], [(0, 0), (2, 1), (2, 2)], n_users=3)
    result = evaluate(scorer, task, recall_ks=(1, 2), ndcg_ks=(2,), batch_size=2, progress=False)
    assert result.ranks.tolist() == [1, 4, 1]
    assert result.metrics["recall@1"] == 0.0
    assert result.metrics["recall@2"] == pytest.approx(2 / 3)
    assert result.metrics["ndcg@2"] == pytest.approx(2 / np.log2(3) / 3)


def test_batch_size_does_not_change_ranks():
    rng = np.random.default_rng(0)
    scorer = FixedScorer(rng.integers(0, 5, size=(50, 30)).astype(np.float32))  # many ties
    history = [(u, i) for u in range(50) for i in rng.choice(30, size=5, replace=False)]
    seen_by_user = {}
    for u, i in history:
        seen_by_user.setdefault(u, set()).add(i)
    targets = [next(i for i in range(30) if i not in seen_by_user[u]) for u in range(50)]
    task = make_task(list(range(50)), targets, history, n_users=50)
    ranks = [evaluate(scorer, task, batch_size=b, progress=False).ranks for b in (1, 7, 64)]
    assert (ranks[0] == ranks[1]).all() and (ranks[0] == ranks[2]).all()
    # brute force, one user at a time
    for u, target in enumerate(targets):
        row = scorer.matrix[u].numpy()
        eligible = [i for i in range(30) if i not in seen_by_user[u] and i != target]
        expected = sum(row[i] > row[target] for i in eligible) + sum(row[i] == row[target] for i in eligible)
        assert ranks[0][u] == expected


def dataset_with_history():
    # user 0: train {0, 1}, val 2, test 3; user 1: train {1}, val 0, test 2
    return ProcessedDataset(
        train=frame([(0, 0), (0, 1), (1, 1)]),
        val=frame([(0, 2), (1, 0)]),
        test=frame([(0, 3), (1, 2)]),
        user_ids=np.array([10, 20]),
        item_ids=np.array([100, 200, 300, 400]),
        titles=pl.DataFrame(),
        stats={},
    )


def test_validation_excludes_train_and_test_excludes_train_and_validation():
    dataset = dataset_with_history()
    val_history = history_for(dataset, "val")
    test_history = history_for(dataset, "test")
    assert sorted(val_history.rows()) == [(0, 0), (0, 1), (1, 1)]
    assert sorted(test_history.rows()) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]

    # Every user scores items 0 > 1 > 2 > 3: exclusion alone decides the ranks.
    scorer = FixedScorer([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
    val = evaluate(scorer, evaluation_task(dataset, "val"), recall_ks=(1,), ndcg_ks=(), progress=False)
    test = evaluate(scorer, evaluation_task(dataset, "test"), recall_ks=(1,), ndcg_ks=(), progress=False)
    assert val.ranks.tolist() == [0, 0]  # user 0: item 2 after excluding 0, 1; user 1: item 0 first
    assert test.ranks.tolist() == [
        0,
        0,
    ]  # user 0: item 3 after excluding 0, 1, 2; user 1: item 2 after 0, 1


def test_popularity_scorer_through_the_evaluator():
    dataset = dataset_with_history()
    task = evaluation_task(dataset, "val")
    scorer = PopularityScorer(np.array([0, 2, 1, 0]))
    result = evaluate(scorer, task, recall_ks=(1, 2), ndcg_ks=(), progress=False)
    # user 0 (seen 0, 1): item 2 has count 1 > item 3's 0 -> rank 0
    # user 1 (seen 1): target 0 has count 0; item 2 (1) ahead, item 3 ties -> rank 2
    assert result.ranks.tolist() == [0, 2]


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="cannot evaluate on split"):
        history_for(dataset_with_history(), "train")
