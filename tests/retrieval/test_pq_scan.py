"""The 4-bit scan proposes the maximum-inner-product items, whatever the embeddings' structure."""

import numpy as np
import pytest
from ann_support import EMBEDDING_KINDS, catalogue, recall, top_k

from two_tower_recsys.retrieval.pq_scan import MAX_TRAINING_ROWS, MIN_TRAINING_ROWS, PqParams, training_rows

pytest.importorskip("faiss")


def test_long_vectors_win_by_inner_product_not_by_distance():
    """Item 3 is far from the query but has the largest inner product: MIPS, not nearest neighbour."""
    items = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [5.0, 5.0], [4.0, 0.0]], dtype=np.float32)
    searcher = PqParams(refine_factor=1).build(items)
    assert searcher.n_items == 5
    assert top_k(searcher, np.array([[1.0, 0.2]], dtype=np.float32), items, 2).tolist() == [[3, 4]]


def test_the_candidates_are_the_best_codes_refine_factor_per_wanted_item():
    rng = np.random.default_rng(1)
    items = rng.standard_normal((500, 8)).astype(np.float32)
    searcher = PqParams(refine_factor=3).build(items)
    candidates = searcher.search(rng.standard_normal((4, 8)).astype(np.float32), 10)
    assert candidates.shape == (4, 30) and candidates.dtype == np.int64
    assert all(len(set(row)) == 30 for row in candidates.tolist())  # distinct items, no padding
    assert searcher.search(items[:1], 400).shape == (1, 500)  # never more than the catalogue


@pytest.mark.parametrize("n_items", [1, 7])
def test_a_catalogue_smaller_than_the_codebooks_still_builds(n_items):
    items = np.random.default_rng(2).standard_normal((n_items, 4)).astype(np.float32)
    searcher = PqParams().build(items)
    assert sorted(searcher.search(items[:1], 10)[0].tolist()) == list(range(n_items))


def test_training_rows_are_a_seeded_bounded_sample_or_the_catalogue_repeated():
    small = np.arange(10, dtype=np.float32).reshape(5, 2)
    assert len(training_rows(small)) >= MIN_TRAINING_ROWS
    assert set(training_rows(small)[:, 0].tolist()) == {0, 2, 4, 6, 8}
    large = np.random.default_rng(0).standard_normal((MAX_TRAINING_ROWS + 10, 2)).astype(np.float32)
    assert len(training_rows(large)) == MAX_TRAINING_ROWS
    assert np.array_equal(training_rows(large), training_rows(large))


@pytest.mark.parametrize("kind", EMBEDDING_KINDS)
def test_recall_against_exact_at_the_defaults(tmp_path, kind):
    items, queries = catalogue(kind)
    exact = np.argsort(-(queries @ items.T), axis=1)
    PqParams().build(items).write(tmp_path / "items_pq.npy")
    searcher = PqParams().read(tmp_path / "items_pq.npy")
    assert searcher.n_items == 4000
    for k in (10, 100):
        assert recall(top_k(searcher, queries, items, k), exact[:, :k]) >= 0.99


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="refine_factor must be positive"):
        PqParams(refine_factor=0)
