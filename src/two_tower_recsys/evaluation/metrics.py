"""Ranking metrics over the rank of each user's held-out movie (0 = ranked first).

Ties count against the model: a movie scoring exactly as high as the held-out one is ranked
ahead of it, so a constant scorer cannot look perfect.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def ranks_of_targets(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Rank of ``targets[i]`` in row ``i``: movies scoring higher plus OTHER movies scoring equal.

    Excluded movies must already score -inf. A NaN target score ranks last (a diverged model
    must not look good); NaN scores of other movies are never counted as ahead.

    >>> scores = torch.tensor([[0.9, 0.5, 0.5, 0.1], [1.0, 1.0, 1.0, 1.0]])
    >>> ranks_of_targets(scores, torch.tensor([1, 3])).tolist()
    [2, 3]
    >>> ranks_of_targets(torch.tensor([[float("-inf"), 0.2, 0.7]]), torch.tensor([1])).tolist()
    [1]
    """
    target_scores = scores.gather(1, targets.view(-1, 1))
    # higher + other ties = (movies scoring >= the target) - the target itself: one pass, and
    # count_nonzero avoids the slow bool -> int64 path of sum().
    ranks = torch.count_nonzero(scores >= target_scores, dim=1) - 1
    return torch.where(torch.isnan(target_scores.view(-1)), scores.shape[1] - 1, ranks)


def recall_hits(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per user: 1.0 when the held-out movie ranks in the top ``k``, else 0.0."""
    return (np.asarray(ranks) < k).astype(np.float64)


def ndcg_gains(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per user: 1[rank < k] / log2(rank + 2) (one relevant movie, so the ideal DCG is 1)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


PER_USER_METRICS = {"recall": recall_hits, "ndcg": ndcg_gains}


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Share of users whose held-out movie ranks in the top ``k``.

    >>> recall_at_k(np.array([0, 4, 9, 10]), 10)
    0.75
    """
    return float(np.mean(recall_hits(ranks, k)))


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """Mean of 1[rank < k] / log2(rank + 2): one relevant movie per user, so the ideal DCG is 1.

    >>> round(ndcg_at_k(np.array([0, 1, 3, 50]), 10), 4)  # (1 + 1/log2(3) + 1/log2(5) + 0) / 4
    0.5154
    """
    return float(np.mean(ndcg_gains(ranks, k)))


def per_user_values(ranks: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Each user's contribution to each named metric (``"recall@50"``...): an n_users x M matrix.

    A metric is the column's mean, so a bootstrap over users only has to resample rows.

    >>> per_user_values(np.array([0, 20]), ["recall@10", "ndcg@10"]).tolist()
    [[1.0, 1.0], [0.0, 0.0]]
    """
    columns = []
    for name in names:
        kind, _, k = name.partition("@")
        if kind not in PER_USER_METRICS or not k.isdigit():
            raise ValueError(f"unknown metric {name!r}; expected recall@K or ndcg@K")
        columns.append(PER_USER_METRICS[kind](ranks, int(k)))
    return np.stack(columns, axis=1) if columns else np.empty((len(ranks), 0))


def summarize(ranks: np.ndarray, recall_ks: tuple[int, ...], ndcg_ks: tuple[int, ...]) -> dict[str, float]:
    """{"recall@10": ..., "ndcg@10": ...} in a stable order (recalls first)."""
    metrics = {f"recall@{k}": recall_at_k(ranks, k) for k in recall_ks}
    metrics.update({f"ndcg@{k}": ndcg_at_k(ranks, k) for k in ndcg_ks})
    return metrics
