"""The exact core: score user vectors against the whole catalogue, hide movies, rank the top k.

It scores with the index's :class:`EmbeddingScorer` and hides with the (row, item) pairs of
:class:`Hidden` (built from the same :class:`SeenItems` the evaluator masks with), then takes the
exact top-k (:func:`~two_tower_recsys.retrieval.topk.top_k`: equal scores rank the lower
catalogue index first, on every path).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from two_tower_recsys.retrieval.scorers import EmbeddingScorer
from two_tower_recsys.retrieval.seen import SeenItems
from two_tower_recsys.retrieval.topk import rows_per_chunk, top_k

MINUS_INF = float("-inf")


@dataclass(frozen=True)
class Hidden:
    """(row, item) pairs a batch of rows must never get: excluded movies, a history's movies.

    NumPy arrays: a one-user request makes a handful of these small operations, each ~1 us in
    NumPy against ~10 us in torch.
    """

    rows: np.ndarray  # int64, ascending
    items: np.ndarray  # int64

    def counts(self, n_rows: int) -> np.ndarray:
        return np.bincount(self.rows, minlength=n_rows)

    def of_rows(self, rows: np.ndarray, n_rows: int) -> Hidden:
        """The pairs of ``rows`` (of a batch of ``n_rows``), renumbered 0..len(rows) - 1.

        ``rows`` may come in any order; the pairs come back with ascending new rows.
        """
        renumbered = np.full(n_rows, -1, dtype=np.int64)
        renumbered[rows] = np.arange(len(rows))
        new_rows = renumbered[self.rows]
        kept = np.flatnonzero(new_rows >= 0)
        kept = kept[np.argsort(new_rows[kept], kind="stable")]
        return Hidden(new_rows[kept], self.items[kept])

    def of_row_range(self, start: int, stop: int) -> Hidden:
        """The pairs of rows ``start..stop - 1``, renumbered from 0."""
        low, high = np.searchsorted(self.rows, (start, stop)).tolist()
        if start == 0 and low == 0 and high == len(self.rows):
            return self
        return Hidden(self.rows[low:high] - start, self.items[low:high])

    def unique(self, n_items: int) -> Hidden:
        keys = np.unique(self.rows * n_items + self.items)
        return Hidden(keys // n_items, keys % n_items)

    def hide(self, scores: torch.Tensor) -> None:
        """Set the hidden pairs' scores to -inf, in place (``scores``: [rows of the batch, n_items])."""
        if len(self.rows):
            scores.numpy()[self.rows, self.items] = MINUS_INF


NOTHING_HIDDEN = Hidden(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


def hidden_of(users: np.ndarray, excluded: SeenItems | None) -> Hidden:
    """What ``excluded`` hides for the user indices ``users`` (row i is ``users[i]``)."""
    if excluded is None:
        return NOTHING_HIDDEN
    return Hidden(*excluded.batch_positions(users))


def exact_top(
    scorer: EmbeddingScorer, vectors: torch.Tensor, k: int, hidden: Hidden
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, item indices) [len(vectors), k] over the whole catalogue, best first; hidden: -inf.

    Scores, masks and ranks a few MB of users at a time: the scores stay in cache.
    """
    tops = []
    step = rows_per_chunk(scorer.n_items)
    for start in range(0, len(vectors), step):
        scores = scorer.score_vectors(vectors[start : start + step])
        hidden.of_row_range(start, start + step).hide(scores)
        tops.append(top_k(scores, k))
    if len(tops) == 1:
        return tops[0]
    return torch.cat([values for values, _ in tops]), torch.cat([items for _, items in tops])
