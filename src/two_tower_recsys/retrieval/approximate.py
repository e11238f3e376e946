"""What the recommender needs of an approximate index: candidates to score exactly.

Two kinds ship (README, "Approximate indexes"): ``pq`` (``pq_scan.py``: every item's 4-bit code
scanned; recall that does not depend on the embeddings' structure, the one to use) and
``hnsw`` (``ann.py``: graphs searched in time sub-linear in the catalogue; high recall only where
the embeddings have structure, as trained ones do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np


class CandidateSearcher(Protocol):
    """Candidates for each query's top ``k`` once ``n_hidden`` of them are dropped (the movies a
    user must not get), fetched for that row alone: a row's candidates do not depend on the
    other rows' ``k`` or ``n_hidden`` (up to ties in the approximate order at its last one).
    ``k`` and ``n_hidden``: one int for every query, or one per query."""

    @property
    def n_items(self) -> int: ...

    def candidate_counts(self, k: int | np.ndarray, n_hidden: int | np.ndarray = 0) -> np.ndarray:
        """int64: how many candidates :meth:`search` proposes for each (``k``, ``n_hidden``)."""
        ...

    def search(self, queries: np.ndarray, k: int | np.ndarray, n_hidden: int | np.ndarray = 0) -> np.ndarray:
        """int64 [len(queries), the largest count] distinct candidate item indices per row; -1
        pads a row past its own count or where the index found fewer."""
        ...

    def write(self, path: Path) -> None: ...


class AnnParams(Protocol):
    """An approximate index's settings: builds, reads and describes its file."""

    file_name: str

    def build_settings(self) -> dict[str, Any]: ...

    def build(self, item_embeddings: np.ndarray) -> CandidateSearcher: ...

    def read(self, path: Path) -> CandidateSearcher: ...
