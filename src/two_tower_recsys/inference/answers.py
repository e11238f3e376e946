"""The answers' shape: one :class:`UserRecommendations` per user, built from ranked rows or popularity.

- :meth:`AnswerFormatter.triples` turns ranked (score, item) rows into ``(movieId, score, title)``
  triples, each row cut at its own ``k`` or before its first ``-inf`` (an excluded movie): a user
  who has rated almost the whole catalogue gets fewer than ``k``.
- :meth:`AnswerFormatter.popular` is the cold-start answer: every movie by its number of positives
  (ties in catalogue order), for a user id the model has never seen or a history with no known movie.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from two_tower_recsys.artifacts.store import RetrievalIndex
from two_tower_recsys.errors import RequestError
from two_tower_recsys.inference.exact_ranking import MINUS_INF
from two_tower_recsys.retrieval.scorers import PopularityScorer

Triple = tuple[int, float, str]  # movieId, score, title
RECOMMENDATION_FORMATS = ("triples", "structs")


@dataclass(frozen=True)
class UserRecommendations:
    user_id: int
    k: int  # after the clamp to the catalogue size
    fallback: bool  # True: unknown user, answered with the popularity ranking
    recommendations: list[Triple]
    unknown_history_items: int | None = None  # with a request history: movieIds skipped as unknown

    def as_dict(self, recommendation_format: str = "triples") -> dict[str, Any]:
        """The JSON shape printed by the CLI and returned per row by the served model.

        ``recommendation_format="structs"`` gives each recommendation as
        ``{"movieId", "score", "title"}`` instead of a ``[movieId, score, title]`` triple: the form
        Spark can type (``array<struct<...>>``; a mixed-type list has no Spark type).
        """
        if recommendation_format == "structs":
            recommendations: list[Any] = [
                {"movieId": movie_id, "score": score, "title": title}
                for movie_id, score, title in self.recommendations
            ]
        elif recommendation_format == "triples":
            recommendations = [list(triple) for triple in self.recommendations]
        else:
            raise RequestError(
                f"recommendation_format must be one of {', '.join(RECOMMENDATION_FORMATS)}, "
                f"got {recommendation_format!r}"
            )
        answer = {
            "user_id": self.user_id,
            "k": self.k,
            "fallback": self.fallback,
            "recommendations": recommendations,
        }
        if self.unknown_history_items is not None:
            answer["unknown_history_items"] = self.unknown_history_items
        return answer


class AnswerFormatter:
    """Triples of an index's movies: ranked rows, or the popularity ranking."""

    def __init__(self, index: RetrievalIndex):
        # Python lists: building triples from them is several times faster than from arrays.
        self._movie_ids: list[int] = index.item_ids.tolist()
        self._titles: list[str] = list(index.titles)
        self._popular, self._popular_items = self._popularity_ranking(index)

    def triples(self, values: torch.Tensor, items: torch.Tensor, ks: np.ndarray) -> list[list[Triple]]:
        return self.triples_of_lists(values.tolist(), items.tolist(), ks.tolist())

    def triples_of_lists(
        self, values: list[list[float]], items: list[list[int]], ks: list[int]
    ) -> list[list[Triple]]:
        movie_ids, titles = self._movie_ids, self._titles
        answers = []
        # Plain Python on the rows' lists: for the one-user requests of serving, every NumPy or
        # torch call on these tiny arrays costs more than the whole loop.
        for row_items, row_values, k in zip(items, values, ks, strict=True):
            # Excluded movies score -inf and sort last: cut the row before the first of them.
            count = k if row_values[k - 1] != MINUS_INF else row_values.index(MINUS_INF)
            answers.append(
                [
                    (movie_ids[item], score, titles[item])
                    for item, score in zip(row_items[:count], row_values[:count], strict=True)
                ]
            )
        return answers

    def popular(self, k: int) -> list[Triple]:
        """The first ``k`` of the popularity ranking."""
        return self._popular[:k]

    def popular_without(self, hidden_items: np.ndarray, k: int) -> list[Triple]:
        """The first ``k`` of the popularity ranking that are not ``hidden_items``."""
        head = self._popular_items[: k + len(hidden_items)]
        kept = np.flatnonzero(~np.isin(head, hidden_items))[:k]
        return [self._popular[position] for position in kept.tolist()]

    def _popularity_ranking(self, index: RetrievalIndex) -> tuple[list[Triple], np.ndarray]:
        """Every movie by number of positives, ties in catalogue order."""
        scores = PopularityScorer(index.popularity).score(torch.zeros(1, dtype=torch.int64))[0]
        order = torch.sort(scores, descending=True, stable=True)
        ranking = [
            (self._movie_ids[item], score, self._titles[item])
            for item, score in zip(order.indices.tolist(), order.values.tolist(), strict=True)
        ]
        return ranking, order.indices.numpy()
