"""The HNSW graphs over item embeddings find the maximum-inner-product items."""

import numpy as np
import pytest

from two_tower_recsys.retrieval.ann import HnswParams, HnswSearcher, build_hnsw, read_hnsw, write_hnsw


def top_k(searcher: HnswSearcher, queries: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """The best ``k`` of the searcher's candidates by exact inner product (as the recommender ranks)."""
    candidates = searcher.search(queries, k)
    assert (candidates >= 0).all()
    scores = np.einsum("qd,qcd->qc", queries, items[candidates])
    return np.take_along_axis(candidates, np.argsort(-scores, axis=1)[:, :k], axis=1)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)]))


def test_long_vectors_win_by_inner_product_not_by_distance():
    """Item 3 is far from the query but has the largest inner product: MIPS, not nearest neighbour."""
    items = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [5.0, 5.0], [4.0, 0.0]], dtype=np.float32)
    for norm_ranges in (1, 2, 4):
        params = HnswParams(m=4, ef_construction=16, norm_ranges=norm_ranges)
        searcher = HnswSearcher(build_hnsw(items, params), ef_search=16)
        assert searcher.n_items == 5
        assert top_k(searcher, np.array([[1.0, 0.2]], dtype=np.float32), items, 2).tolist() == [[3, 4]]


@pytest.mark.parametrize("kind", ["gaussian", "clustered with varied norms"])
def test_recall_against_exact_at_the_defaults(tmp_path, kind):
    rng = np.random.default_rng(0)
    if kind == "gaussian":
        items = rng.standard_normal((4000, 16)).astype(np.float32)
        queries = rng.standard_normal((200, 16)).astype(np.float32)
    else:
        centres = rng.standard_normal((20, 16)).astype(np.float32)
        items = centres[rng.integers(0, 20, 4000)] + 0.5 * rng.standard_normal((4000, 16)).astype(np.float32)
        items *= rng.lognormal(0.0, 0.3, (4000, 1)).astype(np.float32)
        queries = centres[rng.integers(0, 20, 200)] + 0.5 * rng.standard_normal((200, 16)).astype(np.float32)
    exact = np.argsort(-(queries @ items.T), axis=1)
    write_hnsw(build_hnsw(items, HnswParams()), tmp_path / "graphs.npz")
    searcher = HnswSearcher(read_hnsw(tmp_path / "graphs.npz"), ef_search=HnswParams().ef_search)
    assert searcher.n_items == 4000
    for k in (10, 100):
        assert recall(top_k(searcher, queries, items, k), exact[:, :k]) >= 0.99


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="ef_search must be positive"):
        HnswParams(ef_search=0)
