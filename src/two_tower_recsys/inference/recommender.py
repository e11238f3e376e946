"""The recommendation core: top-K movies for a batch of users, shared by the CLI, recommend-all and serving.

It scores with the index's :class:`EmbeddingScorer` and hides excluded movies with
:func:`mask_seen`, the very code the evaluator measures, then takes the exact top-k over the whole
catalogue (:func:`~two_tower_recsys.retrieval.topk.top_k`: equal scores rank the lower catalogue
index first, on every path); or, with an approximate index (``index="hnsw"``), it asks the HNSW graph for
candidates, scores those exactly and filters them the same way.

Answers, one per user and in the order asked:

- ``recommendations``: ``(movieId, score, title)`` triples, best first. ``exclude`` says which
  movies are never recommended: ``rated`` (the default: every movie the user rated, positive or
  not), ``positives`` (only the positives: what evaluation hides) or ``none``. A user who has
  rated almost the whole catalogue gets fewer than ``k`` (never an excluded movie, never a
  ``-inf`` score).
- ``k`` above the catalogue size is clamped to it; the answer reports the clamped ``k``.
- A user id the model has never seen is not an error: the answer is the popularity ranking
  (score = the movie's number of positives; ties in catalogue order) with ``fallback=True``.
- With the approximate index, each user's candidates are over-fetched by the number of movies
  they have excluded (rounded up to a power of two), so that ``k`` remain after filtering; a user
  left with fewer than ``k``, or one who would need more than ``MAX_ANN_FETCH`` candidates, is
  answered exactly instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from two_tower_recsys.artifacts.store import RetrievalIndex, load_index
from two_tower_recsys.errors import ConfigError, RequestError
from two_tower_recsys.inference.validation import k_array, user_id_array
from two_tower_recsys.retrieval.ann import HNSW_FILE, HnswParams, HnswSearcher, build_hnsw, read_hnsw
from two_tower_recsys.retrieval.scorers import PopularityScorer
from two_tower_recsys.retrieval.seen import SeenItems, mask_seen
from two_tower_recsys.retrieval.topk import ranked_top_k, rows_per_chunk, top_k
from two_tower_recsys.settings import InferConfig

log = logging.getLogger(__name__)

Triple = tuple[int, float, str]  # movieId, score, title
RECOMMENDATION_FORMATS = ("triples", "structs")
Exclude = Literal["rated", "positives", "none"]
EXCLUDE_CHOICES: tuple[str, ...] = ("rated", "positives", "none")
IndexKind = Literal["exact", "hnsw"]
INDEX_CHOICES: tuple[str, ...] = ("exact", "hnsw")
# Users needing more ANN candidates than this (k + excluded movies) are scored exactly: past a
# few thousand, a graph search costs more than one exact row.
MAX_ANN_FETCH = 4096
MIN_ANN_FETCH = 16


@dataclass(frozen=True)
class UserRecommendations:
    user_id: int
    k: int  # after the clamp to the catalogue size
    fallback: bool  # True: unknown user, answered with the popularity ranking
    recommendations: list[Triple]

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
        return {
            "user_id": self.user_id,
            "k": self.k,
            "fallback": self.fallback,
            "recommendations": recommendations,
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

    def __init__(self, index: RetrievalIndex, *, batch_size: int = 1024, ann: HnswSearcher | None = None):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if ann is not None and ann.n_items != index.n_items:
            raise ValueError(f"the ANN index holds {ann.n_items} items, the index {index.n_items}")
        self.index = index
        self.batch_size = batch_size
        self.ann = ann
        self._scorer = index.scorer()
        self._users = UserLookup(index.user_ids)
        # Python lists: building triples from them is several times faster than from arrays.
        self._movie_ids: list[int] = index.item_ids.tolist()
        self._titles: list[str] = list(index.titles)
        self._popular = self._popularity_ranking(index)

    @classmethod
    def from_artifacts(
        cls,
        directory: Path,
        *,
        batch_size: int = 1024,
        index: IndexKind = "exact",
        hnsw: HnswParams | None = None,
    ) -> Recommender:
        """Load (and verify against its manifest) the index in ``directory``.

        ``index="hnsw"`` uses the HNSW graph shipped in ``directory`` (a packaged model's index)
        when it was built with ``hnsw``'s build settings, and otherwise builds one in memory.
        """
        retrieval_index = load_index(directory)
        if index not in INDEX_CHOICES:
            raise ConfigError(f"index must be one of {', '.join(INDEX_CHOICES)}, got {index!r}")
        ann = None
        if index == "hnsw":
            ann = hnsw_searcher(Path(directory), retrieval_index, hnsw or HnswParams())
        return cls(retrieval_index, batch_size=batch_size, ann=ann)

    @classmethod
    def from_settings(cls, directory: Path, infer: InferConfig) -> Recommender:
        """:meth:`from_artifacts` with the ``infer`` settings: what the CLI, recommend-all and serving use."""
        return cls.from_artifacts(
            directory, batch_size=infer.batch_size, index=infer.index, hnsw=hnsw_params(infer)
        )

    @property
    def n_items(self) -> int:
        return self.index.n_items

    def recommend(
        self, user_ids: Sequence[int] | np.ndarray, k: int | Sequence[int], *, exclude: Exclude = "rated"
    ) -> list[UserRecommendations]:
        """Top-``k`` for each user (``k`` may also be one value per user); raises RequestError."""
        if exclude not in EXCLUDE_CHOICES:
            raise ConfigError(f"exclude must be one of {', '.join(EXCLUDE_CHOICES)}, got {exclude!r}")
        ids = user_id_array(user_ids)
        ks = np.minimum(k_array(k, len(ids)), self.n_items)
        indices, known = self._users.indices(ids)
        answers: list[UserRecommendations | None] = [None] * len(ids)
        known_rows = np.flatnonzero(known)
        for start in range(0, len(known_rows), self.batch_size):
            rows = known_rows[start : start + self.batch_size]
            values, items = self.top_items(indices[rows], ks[rows], exclude)
            for row, triples in zip(rows, self._triples(values, items, ks[rows]), strict=True):
                answers[row] = UserRecommendations(int(ids[row]), int(ks[row]), False, triples)
        for row in np.flatnonzero(~known):
            answers[row] = UserRecommendations(int(ids[row]), int(ks[row]), True, self._popular[: ks[row]])
        return answers  # type: ignore[return-value]  # every row was answered above

    @torch.inference_mode()
    def top_items(
        self, users: np.ndarray, ks: np.ndarray, exclude: Exclude
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, item indices) [len(users), max(ks)], best first; excluded or missing: -inf.

        The array form of :meth:`recommend` for known user indices (``ks`` already clamped), for
        callers that write columns rather than triples (``recommend-all``).
        """
        users_t = torch.from_numpy(np.asarray(users, dtype=np.int64))
        excluded = self.index.excluded(exclude)
        k_max = int(ks.max())
        if self.ann is None:
            return self._exact_top(users_t, k_max, excluded)
        return self._ann_top(users_t, torch.from_numpy(np.asarray(ks, dtype=np.int64)), k_max, excluded)

    def _exact_top(
        self, users: torch.Tensor, k_max: int, excluded: SeenItems | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score, mask and rank a few MB of users at a time: the scores stay in cache."""
        tops = []
        for chunk in users.split(rows_per_chunk(self.n_items)):
            scores = self._scorer.score(chunk)
            if excluded is not None:
                mask_seen(scores, chunk, excluded)
            tops.append(top_k(scores, k_max))
        if len(tops) == 1:
            return tops[0]
        return torch.cat([values for values, _ in tops]), torch.cat([items for _, items in tops])

    def _ann_top(
        self, users: torch.Tensor, ks: torch.Tensor, k_max: int, excluded: SeenItems | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Over-fetch candidates from the graph, score them exactly, filter; exact where short."""
        n_excluded = excluded.counts(users) if excluded is not None else torch.zeros_like(users)
        wanted = torch.minimum(ks, self.n_items - n_excluded)  # what an exact answer would hold
        fetch = _power_of_two_at_least(ks + n_excluded).clamp(min=MIN_ANN_FETCH).clamp(max=self.n_items)
        values = torch.full((len(users), k_max), float("-inf"))
        items = torch.zeros((len(users), k_max), dtype=torch.int64)
        exact_rows = [torch.nonzero(fetch > MAX_ANN_FETCH).flatten()]
        for width in torch.unique(fetch[fetch <= MAX_ANN_FETCH]).tolist():
            rows = torch.nonzero(fetch == width).flatten()
            got_values, got_items = self._candidates_top(
                users[rows], int(width), min(k_max, int(width)), excluded
            )
            short = (got_values != float("-inf")).sum(dim=1) < wanted[rows]
            exact_rows.append(rows[short])
            values[rows, : got_values.shape[1]] = got_values
            items[rows, : got_items.shape[1]] = got_items
        rows = torch.cat(exact_rows)
        if len(rows):
            values[rows], items[rows] = self._exact_top(users[rows], k_max, excluded)
        return values, items

    def _candidates_top(
        self, users: torch.Tensor, width: int, k: int, excluded: SeenItems | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` of ``width`` graph candidates per user, scored exactly, excluded ones -inf."""
        assert self.ann is not None
        user_vectors = self._scorer.user_embeddings[users]
        candidates = torch.from_numpy(self.ann.search(user_vectors.numpy(), width))
        missing = candidates < 0
        candidates[missing] = 0
        item_vectors = self.index.item_embeddings[candidates]  # [n, width, dim]
        scores = torch.bmm(item_vectors, user_vectors.unsqueeze(2)).squeeze(2)
        if self._scorer.temperature != 1.0:
            scores /= self._scorer.temperature
        scores[missing] = float("-inf")
        if excluded is not None:
            rows, seen_items = excluded.batch_positions(users)
            keys = torch.arange(len(users)).unsqueeze(1) * self.n_items + candidates
            scores[torch.isin(keys, rows * self.n_items + seen_items)] = float("-inf")
        return ranked_top_k(scores, k, candidates)  # ties: the lower item index first, as exact

    def _triples(self, values: torch.Tensor, items: torch.Tensor, ks: np.ndarray) -> list[list[Triple]]:
        # Excluded movies score -inf and sort last: cut each row before the first of them.
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


def _power_of_two_at_least(values: torch.Tensor) -> torch.Tensor:
    return torch.pow(2, torch.ceil(torch.log2(values.clamp(min=1).double()))).long()


def hnsw_params(infer: InferConfig) -> HnswParams:
    return HnswParams(infer.hnsw_m, infer.hnsw_ef_construction, infer.hnsw_ef_search, infer.hnsw_norm_ranges)


def hnsw_searcher(directory: Path, index: RetrievalIndex, params: HnswParams) -> HnswSearcher:
    """The HNSW graph shipped beside the index (verified by its manifest), else one built now."""
    shipped = index.manifest.get("ann")
    if HNSW_FILE in index.manifest.get("files", {}) and shipped == params.build_settings():
        return HnswSearcher(read_hnsw(directory / HNSW_FILE), params.ef_search)
    log.warning(
        "no HNSW index built with %s in %s: building one in memory "
        "(package the model with infer.index=hnsw to ship it)",
        params.build_settings(),
        directory,
    )
    return HnswSearcher(build_hnsw(index.item_embeddings.numpy(), params), params.ef_search)
