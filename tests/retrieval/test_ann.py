"""The HNSW graphs over item embeddings find the maximum-inner-product items."""

import numpy as np
import pytest
from ann_support import EMBEDDING_KINDS, catalogue, recall, top_k

from two_tower_recsys.retrieval.ann import HnswParams, HnswSearcher, build_hnsw, read_hnsw, write_hnsw


def test_long_vectors_win_by_inner_product_not_by_distance():
    """Item 3 is far from the query but has the largest inner product: MIPS, not nearest neighbour."""
    items = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [5.0, 5.0], [4.0, 0.0]], dtype=np.float32)
    for norm_ranges in (1, 2, 4):
        params = HnswParams(m=4, ef_construction=16, norm_ranges=norm_ranges)
        searcher = HnswSearcher(build_hnsw(items, params), ef_search=16)
        assert searcher.n_items == 5
        assert top_k(searcher, np.array([[1.0, 0.2]], dtype=np.float32), items, 2).tolist() == [[3, 4]]


@pytest.mark.parametrize("kind", EMBEDDING_KINDS)
def test_recall_against_exact_at_the_defaults(tmp_path, kind):
    items, queries = catalogue(kind)
    exact = np.argsort(-(queries @ items.T), axis=1)
    write_hnsw(build_hnsw(items, HnswParams()), tmp_path / "graphs.npz")
    searcher = HnswSearcher(read_hnsw(tmp_path / "graphs.npz"), ef_search=HnswParams().ef_search)
    assert searcher.n_items == 4000
    for k in (10, 100):
        assert recall(top_k(searcher, queries, items, k), exact[:, :k]) >= 0.99


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="ef_search must be positive"):
        HnswParams(ef_search=0)
