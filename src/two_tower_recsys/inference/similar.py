"""Similar movies: the movies closest to a movie in the movie tower's space.

Closeness is the cosine of the angle between two movie vectors. The dot product that ranks movies
for a user would not do here: a movie's norm carries its popularity (popular movies are pushed
out to win more users' dot products), so the nearest neighbours by dot product of *any* movie
would be the blockbusters. The cosine compares directions: what the movies are liked for.

Answers, one per asked movie and in the order asked: ``(movieId, score, title)`` triples, best
first, the movie itself never among them; ``k`` is clamped to the rest of the catalogue. Ties
rank the lower catalogue index first (:func:`~two_tower_recsys.retrieval.topk.top_k`'s rule).
A movieId the index does not hold is a :class:`RequestError` naming the row.

Memory: the normalised movie table (one more copy of ``item_embeddings``), and
``rows_per_chunk`` query rows of scores at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from two_tower_recsys.artifacts.store import RetrievalIndex
from two_tower_recsys.errors import RequestError
from two_tower_recsys.inference.fresh_histories import IdLookup
from two_tower_recsys.inference.validation import MOVIE_ID, describe, integer_column, k_array
from two_tower_recsys.retrieval.topk import rows_per_chunk, top_k

Triple = tuple[int, float, str]  # movieId, score, title
# A movie vector shorter than this (no id embedding and no content) has no direction: its
# cosine with every movie is 0, so it neither wins nor divides by zero.
_MIN_NORM = 1e-12


@dataclass(frozen=True)
class SimilarMovies:
    movie_id: int
    title: str
    k: int  # after the clamp to the rest of the catalogue
    similar: list[Triple]

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape printed by ``two-tower similar`` and returned per row by the served model."""
        return {
            MOVIE_ID: self.movie_id,
            "title": self.title,
            "k": self.k,
            "similar": [list(triple) for triple in self.similar],
        }


class SimilarMovieFinder:
    """Answers :meth:`similar` from an index's movie vectors (loaded once)."""

    def __init__(self, index: RetrievalIndex):
        vectors = index.item_embeddings.float()
        self._directions = vectors / vectors.norm(dim=1, keepdim=True).clamp(min=_MIN_NORM)
        self._movies = IdLookup(index.item_ids)
        self._movie_ids: list[int] = index.item_ids.tolist()
        self._titles: list[str] = list(index.titles)

    @property
    def n_items(self) -> int:
        return len(self._movie_ids)

    def indices(self, movie_ids: np.ndarray) -> np.ndarray:
        """Catalogue indices of validated movieIds; an unknown one is a RequestError naming its row."""
        indices, known = self._movies.indices(movie_ids)
        if not known.all():
            row = int(np.flatnonzero(~known)[0])
            raise RequestError(f"row {row}: movie_id {describe(movie_ids[row])} is not in the catalogue")
        return indices

    @torch.inference_mode()
    def similar(self, movie_ids: Sequence[int] | np.ndarray, k: int | Sequence[int]) -> list[SimilarMovies]:
        """The ``k`` movies most like each of ``movie_ids`` (``k``: one value, or one per movie)."""
        ids = integer_column(_as_column(movie_ids), MOVIE_ID)
        ks = np.minimum(k_array(k, len(ids)), max(self.n_items - 1, 0))
        queries = self.indices(ids)
        answers: list[SimilarMovies] = []
        step = rows_per_chunk(self.n_items)
        for start in range(0, len(ids), step):
            rows = torch.from_numpy(queries[start : start + step])
            scores = self._directions[rows] @ self._directions.T
            scores[torch.arange(len(rows)), rows] = float("-inf")  # the movie itself
            chunk_ks = ks[start : start + step]
            values, items = top_k(scores, int(chunk_ks.max()) if len(chunk_ks) else 0)
            for row, (query, k_row) in enumerate(zip(rows.tolist(), chunk_ks.tolist(), strict=True)):
                triples = [
                    (self._movie_ids[item], score, self._titles[item])
                    for item, score in zip(
                        items[row, :k_row].tolist(), values[row, :k_row].tolist(), strict=True
                    )
                ]
                answers.append(SimilarMovies(self._movie_ids[query], self._titles[query], k_row, triples))
        return answers


def _as_column(values: Sequence[int] | np.ndarray) -> pd.Series:
    # Python sequences stay object-typed so that [1, 1.5] is reported at row 1, as user ids are.
    if isinstance(values, np.ndarray):
        return pd.Series(values)
    return pd.Series(list(values), dtype=object)
