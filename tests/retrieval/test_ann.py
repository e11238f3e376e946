"""The HNSW graph over item embeddings finds the maximum-inner-product items."""

import numpy as np
import pytest

from two_tower_recsys.retrieval.ann import HnswParams, HnswSearcher, build_hnsw, read_hnsw, write_hnsw


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)]))


def test_long_vectors_win_by_inner_product_not_by_distance():
    """Item 3 is far from the query but has the largest inner product: MIPS, not nearest neighbour."""
    items = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [5.0, 5.0]], dtype=np.float32)
    searcher = HnswSearcher(build_hnsw(items, HnswParams(m=4, ef_construction=16)), ef_search=16)
    labels = searcher.search(np.array([[1.0, 0.2]], dtype=np.float32), 2)
    assert labels.tolist() == [[3, 0]]


def test_recall_against_exact_on_clustered_embeddings_with_varied_norms(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 16)).astype(np.float32)
    items = centres[rng.integers(0, 20, 3000)] + 0.5 * rng.standard_normal((3000, 16)).astype(np.float32)
    items *= rng.lognormal(0.0, 0.3, (3000, 1)).astype(np.float32)
    queries = centres[rng.integers(0, 20, 200)] + 0.5 * rng.standard_normal((200, 16)).astype(np.float32)
    exact = np.argsort(-(queries @ items.T), axis=1)
    write_hnsw(build_hnsw(items, HnswParams()), tmp_path / "graph.faiss")
    searcher = HnswSearcher(read_hnsw(tmp_path / "graph.faiss"), ef_search=HnswParams().ef_search)
    assert searcher.n_items == 3000
    for k in (10, 100):
        assert recall(searcher.search(queries, k), exact[:, :k]) >= 0.99


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="ef_search must be positive"):
        HnswParams(ef_search=0)
