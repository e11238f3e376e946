"""An approximate index that scans every item's 4-bit code (faiss product-quantisation fast scan).

Each item embedding is stored as one 4-bit code per dimension (16 levels per dimension, learnt by
k-means: 32 bytes per 64-dim item, an eighth of the float32 vectors), and a query's inner product
with every code is computed from small lookup tables held in SIMD registers (faiss
``IndexPQFastScan``). The scan is exhaustive, so unlike a graph it does not depend on the
embeddings having structure to navigate: on 1M random Gaussian items x 64, where the HNSW graphs
reach recall@10 0.90 at efSearch 1024 (and 0.98 only at 8192, ten times slower than exact), the
scan's best 10 x 16 codes (what the recommender fetches for k = 10) held 0.998 of the exact
top-10, at about a tenth of the exact scan's latency, from an index built in 10 s
(``benchmarks/bench_ann.py``).

The scan only proposes candidates: the recommender scores them exactly, as it does the graph's,
so an answer carries the same numbers as the exact one and differs only when a true top-k item's
code ranked below the candidates.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from two_tower_recsys.settings import InferConfig

log = logging.getLogger(__name__)

PQ_FILE = "items_pq.npy"  # the serialised faiss index, as a uint8 array
BITS_PER_DIMENSION = 4  # what the fast scan's in-register lookup tables hold
# The k-means of 16 levels per dimension needs few rows: more only slows the build.
MAX_TRAINING_ROWS = 65_536
# A small catalogue is repeated up to this many rows so that k-means always has enough points.
MIN_TRAINING_ROWS = 1_024


def _faiss():
    import faiss  # imported on first use: exact serving does not need it

    return faiss


@dataclass(frozen=True)
class PqParams:
    # Candidates per wanted item, scored exactly: the recall / latency knob (infer.pq_refine_factor).
    refine_factor: int = InferConfig.pq_refine_factor

    file_name: ClassVar[str] = PQ_FILE

    def __post_init__(self) -> None:
        if self.refine_factor <= 0:
            raise ValueError(f"pq refine_factor must be positive, got {self.refine_factor}")

    def build_settings(self) -> dict[str, Any]:
        """What the index file depends on (recorded in the index manifest)."""
        return {"kind": "pq", "metric": "inner_product", "bits_per_dimension": BITS_PER_DIMENSION}

    def build(self, item_embeddings: np.ndarray) -> PqSearcher:
        return PqSearcher(build_pq(item_embeddings), self.refine_factor)

    def read(self, path: Path) -> PqSearcher:
        return PqSearcher(_faiss().deserialize_index(np.load(path)), self.refine_factor)


def training_rows(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """A seeded sample of ``MAX_TRAINING_ROWS`` rows, or the catalogue repeated to ``MIN_TRAINING_ROWS``."""
    if len(vectors) > MAX_TRAINING_ROWS:
        rows = np.random.default_rng(seed).choice(len(vectors), MAX_TRAINING_ROWS, replace=False)
        return vectors[np.sort(rows)]
    return np.tile(vectors, (-(-MIN_TRAINING_ROWS // max(len(vectors), 1)), 1))


def build_pq(item_embeddings: np.ndarray) -> Any:
    """The fast-scan index over the rows of ``item_embeddings`` (row i is item i)."""
    faiss = _faiss()
    vectors = np.ascontiguousarray(item_embeddings, dtype=np.float32)
    started = time.perf_counter()
    dim = vectors.shape[1]
    index = faiss.IndexPQFastScan(dim, dim, BITS_PER_DIMENSION, faiss.METRIC_INNER_PRODUCT)
    # One OpenMP thread: 64 tiny k-means split across threads spent 9-27 s spinning on a busy
    # 2-core machine where one thread takes 1 s (27k items).
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        if len(vectors):
            index.train(training_rows(vectors))
            index.add(vectors)
    finally:
        faiss.omp_set_num_threads(threads)
    seconds = time.perf_counter() - started
    log.info("built the 4-bit scan index over %d items in %.1f s", len(vectors), seconds)
    return index


class PqSearcher:
    """Candidate item indices for a batch of user embeddings: the best codes by inner product."""

    def __init__(self, index: Any, refine_factor: int):
        self.index = index
        self.refine_factor = refine_factor

    @property
    def n_items(self) -> int:
        return int(self.index.ntotal)

    def write(self, path: Path) -> None:
        """Write the index to ``path`` (callers write inside a staged directory committed atomically)."""
        with open(path, "wb") as handle:
            np.save(handle, _faiss().serialize_index(self.index))

    def candidate_counts(self, k: int | np.ndarray, n_hidden: int | np.ndarray = 0) -> np.ndarray:
        """``refine_factor`` codes per wanted item, one more per hidden one: at most the catalogue.

        The hidden movies are not multiplied: however many of them rank among the best codes, the
        refine factor is still left for the ``k`` wanted.
        """
        return np.minimum(self.refine_factor * np.asarray(k, dtype=np.int64) + n_hidden, self.n_items)

    def search(self, queries: np.ndarray, k: int | np.ndarray, n_hidden: int | np.ndarray = 0) -> np.ndarray:
        """int64 [len(queries), the largest count] candidate items, best code first; -1 pads a row
        past its own count (one search as wide as the widest row, each row cut to its own)."""
        counts = np.broadcast_to(self.candidate_counts(k, n_hidden), (len(queries),))
        width = int(counts.max(initial=0))
        if width == 0:
            return np.zeros((len(queries), 0), dtype=np.int64)
        _, labels = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), width)
        labels[np.arange(width) >= counts[:, None]] = -1
        return labels
