"""An approximate index over the item embeddings for maximum inner product search (faiss HNSW).

The model's score is ``dot(user, item) / temperature`` with a positive temperature, so the best
movies by score are those of largest inner product. Measured on 27k x 64 catalogues
(``benchmarks/bench_ann.py``), at M 32, efConstruction 200, efSearch 512:

- HNSW with faiss' ``METRIC_INNER_PRODUCT`` reached recall@100 0.999 on Gaussian embeddings but
  only 0.87 on clustered ones whose norms vary (as trained ones do): long vectors become hubs.
- The usual MIPS -> nearest-neighbour transform (Bachrach et al., 2014: each item ``x`` gets one
  more coordinate ``sqrt(max_norm^2 - |x|^2)``, each query a 0, so that
  ``|q - x|^2 = |q|^2 + max_norm^2 - 2 q.x`` orders items as ``-q.x`` does) reached 0.999 on the
  clustered ones but only 0.90 on the Gaussian ones: the large common extra coordinate squeezes
  all items into a narrow cone.
- So items are split into ``norm_ranges`` groups by norm (norm-ranging, Yan et al., 2018), each
  lifted with its *own* maximum norm (a small extra coordinate) into its own L2 ``IndexHNSWFlat``.
  A query searches every group and the candidates are merged; 4 groups reached >= 0.99 on both.
- At 1M movies x 64 (the same benchmark), efSearch 512 left clustered embeddings at recall@100
  0.988; the default 1024 reaches 0.999 there, and >= 0.998 on both 27k catalogues. Random
  Gaussian embeddings at 1M stay far below (0.91 at 1024, already slower than exact; 0.95 at
  2048): with no structure to exploit, the beam has to visit a large share of the catalogue.
  The 4-bit scan of ``pq_scan.py`` does not depend on structure, and is the approximate index
  to use unless the catalogue is too large to scan.

The index only proposes candidates; the recommender scores them exactly, so an ANN answer carries
the same numbers as the exact one and differs only when the graphs miss a movie. ``efSearch`` is
a query-time setting and grows to ``k`` automatically.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from two_tower_recsys.settings import InferConfig

log = logging.getLogger(__name__)

HNSW_FILE = "items_hnsw.npz"


@dataclass(frozen=True)
class HnswParams:
    """The graphs' settings; the defaults are ``infer.hnsw_*``'s (:class:`InferConfig`)."""

    m: int = InferConfig.hnsw_m  # graph degree: memory is ~2 x M x 4 bytes per movie beside the vectors
    ef_construction: int = InferConfig.hnsw_ef_construction  # build-time beam: slower build, better graph
    ef_search: int = InferConfig.hnsw_ef_search  # query-time beam (at least k): the recall / latency knob
    # Groups of items by norm, one graph each (see the module docstring).
    norm_ranges: int = InferConfig.hnsw_norm_ranges

    file_name: ClassVar[str] = HNSW_FILE

    def __post_init__(self) -> None:
        for name in ("m", "ef_construction", "ef_search", "norm_ranges"):
            if getattr(self, name) <= 0:
                raise ValueError(f"hnsw {name} must be positive, got {getattr(self, name)}")

    def build_settings(self) -> dict[str, Any]:
        """What the graph file depends on (recorded in the index manifest)."""
        return {
            "kind": "hnsw",
            "metric": "inner_product_by_norm_ranges",
            "m": self.m,
            "ef_construction": self.ef_construction,
            "norm_ranges": self.norm_ranges,
        }

    def build(self, item_embeddings: np.ndarray) -> HnswSearcher:
        return HnswSearcher(build_hnsw(item_embeddings, self), self.ef_search)

    def read(self, path: Path) -> HnswSearcher:
        return HnswSearcher(read_hnsw(path), self.ef_search)


def _faiss():
    import faiss  # imported on first use: exact serving does not need it

    return faiss


@dataclass(frozen=True)
class NormRangeGraphs:
    """One lifted L2 HNSW graph per norm range; ``item_ids[i]`` maps graph i's rows to items."""

    graphs: list[Any]
    item_ids: list[np.ndarray]

    @property
    def n_items(self) -> int:
        return sum(len(ids) for ids in self.item_ids)


def _lift(vectors: np.ndarray) -> np.ndarray:
    """Append sqrt(max_norm^2 - |x|^2): every row gets the group's maximum norm."""
    squared_norms = np.einsum("ij,ij->i", vectors, vectors)
    lift = np.sqrt(np.maximum(squared_norms.max(initial=0.0) - squared_norms, 0.0))
    return np.hstack([vectors, lift[:, None]]).astype(np.float32)


def build_hnsw(item_embeddings: np.ndarray, params: HnswParams) -> NormRangeGraphs:
    """The graphs over the rows of ``item_embeddings`` (row i is item i)."""
    faiss = _faiss()
    vectors = np.ascontiguousarray(item_embeddings, dtype=np.float32)
    started = time.perf_counter()
    by_norm = np.argsort(np.einsum("ij,ij->i", vectors, vectors), kind="stable")
    groups = [
        ids for ids in np.array_split(by_norm, min(params.norm_ranges, max(len(vectors), 1))) if len(ids)
    ]
    graphs = []
    for ids in groups:
        graph = faiss.IndexHNSWFlat(vectors.shape[1] + 1, params.m, faiss.METRIC_L2)
        graph.hnsw.efConstruction = params.ef_construction
        graph.add(_lift(vectors[ids]))
        graphs.append(graph)
    log.info(
        "built %d HNSW graphs over %d items in %.1f s",
        len(graphs),
        len(vectors),
        time.perf_counter() - started,
    )
    return NormRangeGraphs(graphs, [ids.astype(np.int64) for ids in groups])


def write_hnsw(index: NormRangeGraphs, path: Path) -> None:
    """Write the graphs to ``path`` (callers write inside a staged directory committed atomically)."""
    faiss = _faiss()
    arrays: dict[str, np.ndarray] = {}
    for i, (graph, ids) in enumerate(zip(index.graphs, index.item_ids, strict=True)):
        arrays[f"graph_{i}"] = faiss.serialize_index(graph)
        arrays[f"items_{i}"] = ids
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def read_hnsw(path: Path) -> NormRangeGraphs:
    faiss = _faiss()
    with np.load(io.BytesIO(Path(path).read_bytes())) as arrays:
        count = sum(1 for name in arrays.files if name.startswith("graph_"))
        graphs = [faiss.deserialize_index(arrays[f"graph_{i}"]) for i in range(count)]
        item_ids = [arrays[f"items_{i}"] for i in range(count)]
    return NormRangeGraphs(graphs, item_ids)


class HnswSearcher:
    """Candidate item indices for a batch of user embeddings."""

    def __init__(self, index: NormRangeGraphs, ef_search: int):
        self.index = index
        self.ef_search = ef_search
        self._faiss = _faiss()

    @property
    def n_items(self) -> int:
        return self.index.n_items

    def write(self, path: Path) -> None:
        write_hnsw(self.index, path)

    def candidate_counts(self, k: int | np.ndarray, n_hidden: int | np.ndarray = 0) -> np.ndarray:
        """``k + n_hidden`` from each graph (all of a smaller one): the best may all share one norm range."""
        per_graph = np.asarray(k, dtype=np.int64) + n_hidden
        return sum((np.minimum(per_graph, len(ids)) for ids in self.index.item_ids), np.zeros_like(per_graph))

    def search(self, queries: np.ndarray, k: int | np.ndarray, n_hidden: int | np.ndarray = 0) -> np.ndarray:
        """int64 [len(queries), the largest count] candidate items, graph by graph; -1 pads.

        Each graph returns its own best ``k + n_hidden`` by inner product, best first; the caller
        scores and merges them. A search's beam is ``max(efSearch, its k)`` wide, so rows wanting
        more than ``ef_search`` are searched apart, each with its own width: a row's candidates
        never depend on the other rows'.
        """
        wanted = np.broadcast_to(np.asarray(k, dtype=np.int64) + n_hidden, (len(queries),))
        beams = np.maximum(wanted, self.ef_search)
        lifted = np.zeros((len(queries), queries.shape[1] + 1), dtype=np.float32)
        lifted[:, :-1] = queries
        width = int(wanted.max(initial=0))
        found = []
        for graph, ids in zip(self.index.graphs, self.index.item_ids, strict=True):
            labels = np.full((len(queries), min(width, len(ids))), -1, dtype=np.int64)
            for beam in np.unique(beams).tolist():
                rows = np.flatnonzero(beams == beam)
                graph_width = min(int(wanted[rows].max()), len(ids))
                parameters = self._faiss.SearchParametersHNSW(efSearch=beam)
                _, labels[rows, :graph_width] = graph.search(lifted[rows], graph_width, params=parameters)
            labels[np.arange(labels.shape[1]) >= wanted[:, None]] = -1
            found.append(np.where(labels >= 0, ids[np.maximum(labels, 0)], -1))
        return np.hstack(found)
