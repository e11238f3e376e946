"""Histories sent with a request: movieIds -> catalogue indices, for a sequence user tower.

A row's history is a list of movieIds, most recent last. Movies the catalogue does not know are
skipped and counted; the tower reads the last ``max_history`` known ones (as it read each user's
latest positives in training); every known one is hidden from that row's recommendations.
Everything is array indexing over the request's histories laid end to end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from two_tower_recsys.preprocessing.histories import UserHistories, most_recent


class IdLookup:
    """Original id (userId, movieId) -> index, vectorised (binary search over the sorted ids)."""

    def __init__(self, ids: np.ndarray):
        self._order = np.argsort(ids, kind="stable")
        self._sorted = np.asarray(ids, dtype=np.int64)[self._order]

    def indices(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index, known) per id; the index of an unknown id is meaningless."""
        if len(self._sorted) == 0:
            return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
        positions = np.minimum(np.searchsorted(self._sorted, ids), len(self._sorted) - 1)
        return self._order[positions], self._sorted[positions] == ids


@dataclass(frozen=True)
class FreshHistories:
    """The histories of the request rows that sent one; ``i`` below numbers those rows."""

    rows: np.ndarray  # [n] request rows, ascending
    indptr: np.ndarray  # [n + 1]: row i's known item indices are items[indptr[i]:indptr[i + 1]]
    items: np.ndarray  # item indices, oldest first within a row
    unknown: np.ndarray  # [n] movieIds of row i the catalogue does not know (skipped)

    @classmethod
    def resolve(cls, histories: list[np.ndarray | None], movies: IdLookup) -> FreshHistories:
        """``histories``: per request row, validated movieIds (int64) or None (none sent)."""
        rows = np.array([row for row, history in enumerate(histories) if history is not None], dtype=np.int64)
        sent = [histories[row] for row in rows]
        lengths = np.array([len(history) for history in sent], dtype=np.int64)  # type: ignore[arg-type]
        movie_ids = np.concatenate(sent) if sent else np.zeros(0, dtype=np.int64)  # type: ignore[arg-type]
        indices, known = movies.indices(movie_ids)
        owner = np.repeat(np.arange(len(rows)), lengths)
        unknown = np.bincount(owner[~known], minlength=len(rows))
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths - unknown, out=indptr[1:])
        return cls(rows, indptr, indices[known], unknown)

    @property
    def known_counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    def _gather(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(i within ``positions``, item) of every known item of the rows ``positions``."""
        starts, lengths = self.indptr[positions], self.known_counts[positions]
        owner = np.repeat(np.arange(len(positions)), lengths)
        offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return owner, self.items[np.repeat(starts, lengths) + offsets]

    def padded(self, positions: np.ndarray, max_history: int) -> UserHistories:
        """What the tower reads for the rows ``positions``: their last ``max_history`` known movies."""
        owner, items = self._gather(positions)
        return most_recent(owner, items, len(positions), max_history)

    def hidden(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row within ``positions``, item) of every known movie in those histories."""
        return self._gather(positions)
