"""The recommendation core: top-K movies for a batch of users, shared by the CLI and the served model.

It scores with the index's :class:`EmbeddingScorer` and hides seen movies with :func:`mask_seen`,
the very code the evaluator measures, then takes an exact ``torch.topk`` over the whole catalogue.

Answers, one per user and in the order asked:

- ``recommendations``: ``(movieId, score, title)`` triples, best first. A user's already-seen
  movies are never recommended while ``filter_seen`` is on, so a user who has seen almost the
  whole catalogue gets fewer than ``k`` (never a seen movie, never a ``-inf`` score).
- ``k`` above the catalogue size is clamped to it; the answer reports the clamped ``k``.
- A user id the model has never seen is not an error: the answer is the popularity ranking
  (score = the movie's number of positives; ties in catalogue order) with ``fallback=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from two_tower_recsys.artifacts.store import RetrievalIndex, load_index
from two_tower_recsys.inference.validation import k_array, user_id_array
from two_tower_recsys.retrieval.scorers import PopularityScorer
from two_tower_recsys.retrieval.seen import mask_seen

Triple = tuple[int, float, str]  # movieId, score, title


@dataclass(frozen=True)
class UserRecommendations:
    user_id: int
    k: int  # after the clamp to the catalogue size
    fallback: bool  # True: unknown user, answered with the popularity ranking
    recommendations: list[Triple]

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape printed by the CLI and returned per row by the served model."""
        return {
            "user_id": self.user_id,
            "k": self.k,
            "fallback": self.fallback,
            "recommendations": [list(triple) for triple in self.recommendations],
        }


class UserLookup:
    """Original userId -> user index, vectorised (binary search over the sorted ids)."""

    def __init__(self, user_ids: np.ndarray):
        self._order = np.argsort(user_ids, kind="stable")
        self._sorted = np.asarray(user_ids, dtype=np.int64)[self._order]

    def indices(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(user index, known) per id; the index of an unknown id is meaningless."""
        if len(self._sorted) == 0:
            return np.zeros(len(user_ids), dtype=np.int64), np.zeros(len(user_ids), dtype=bool)
        positions = np.minimum(np.searchsorted(self._sorted, user_ids), len(self._sorted) - 1)
        return self._order[positions], self._sorted[positions] == user_ids


class Recommender:
    """Loads an index once and answers :meth:`recommend` for any number of users."""

    def __init__(self, index: RetrievalIndex, *, batch_size: int = 1024):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.index = index
        self.batch_size = batch_size
        self._scorer = index.scorer()
        self._users = UserLookup(index.user_ids)
        # Python lists: building triples from them is several times faster than from arrays.
        self._movie_ids: list[int] = index.item_ids.tolist()
        self._titles: list[str] = list(index.titles)
        self._popular = self._popularity_ranking(index)

    @classmethod
    def from_artifacts(cls, directory: Path, *, batch_size: int = 1024) -> Recommender:
        """Load (and verify against its manifest) the index that training wrote to ``directory``."""
        return cls(load_index(directory), batch_size=batch_size)

    @property
    def n_items(self) -> int:
        return self.index.n_items

    def recommend(
        self, user_ids: Sequence[int] | np.ndarray, k: int | Sequence[int], *, filter_seen: bool = True
    ) -> list[UserRecommendations]:
        """Top-``k`` for each user (``k`` may also be one value per user); raises RequestError."""
        ids = user_id_array(user_ids)
        ks = np.minimum(k_array(k, len(ids)), self.n_items)
        indices, known = self._users.indices(ids)
        answers: list[UserRecommendations | None] = [None] * len(ids)
        known_rows = np.flatnonzero(known)
        for start in range(0, len(known_rows), self.batch_size):
            rows = known_rows[start : start + self.batch_size]
            for row, triples in zip(rows, self._top_known(indices[rows], ks[rows], filter_seen), strict=True):
                answers[row] = UserRecommendations(int(ids[row]), int(ks[row]), False, triples)
        for row in np.flatnonzero(~known):
            answers[row] = UserRecommendations(int(ids[row]), int(ks[row]), True, self._popular[: ks[row]])
        return answers  # type: ignore[return-value]  # every row was answered above

    @torch.inference_mode()
    def _top_known(self, users: np.ndarray, ks: np.ndarray, filter_seen: bool) -> list[list[Triple]]:
        users_t = torch.from_numpy(users)
        scores = self._scorer.score(users_t)
        if filter_seen:
            mask_seen(scores, users_t, self.index.seen)
        values, items = torch.topk(scores, int(ks.max()), dim=1)
        # Masked (seen) movies score -inf and sort last: cut each row before the first of them.
        # (Counted in NumPy: for one user, each small torch operation costs more than the count.)
        available = np.count_nonzero(values.numpy() != -np.inf, axis=1).tolist()
        return [
            [
                (self._movie_ids[item], score, self._titles[item])
                for item, score in zip(row_items[:count], row_values[:count], strict=True)
            ]
            for row_items, row_values, count in zip(
                items.tolist(), values.tolist(), np.minimum(ks, available).tolist(), strict=True
            )
        ]

    def _popularity_ranking(self, index: RetrievalIndex) -> list[Triple]:
        """The cold-start answer: every movie by number of positives, ties in catalogue order."""
        scores = PopularityScorer(index.popularity).score(torch.zeros(1, dtype=torch.int64))[0]
        order = torch.sort(scores, descending=True, stable=True)
        return [
            (self._movie_ids[item], score, self._titles[item])
            for item, score in zip(order.indices.tolist(), order.values.tolist(), strict=True)
        ]
