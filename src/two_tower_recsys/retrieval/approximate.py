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
    @property
    def n_items(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """int64 [len(queries), width >= k] candidate item indices, -1 padding a short row."""
        ...

    def write(self, path: Path) -> None: ...


class AnnParams(Protocol):
    """An approximate index's settings: builds, reads and describes its file."""

    file_name: str

    def build_settings(self) -> dict[str, Any]: ...

    def build(self, item_embeddings: np.ndarray) -> CandidateSearcher: ...

    def read(self, path: Path) -> CandidateSearcher: ...
