"""The exact top-k: torch.topk's values, ties broken by the lower item index, on every path."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from two_tower_recsys.retrieval.topk import ITEMS_PER_BLOCK, ranked_top_k, top_k, uses_two_stages

# A few distinct values, -inf and -0.0 among them: most rows are full of ties.
TIED_VALUES = [float("-inf"), -1.5, -0.0, 0.0, 0.25, 2.0, float("inf")]


@st.composite
def score_matrices(draw, min_rows: int, max_rows: int, min_items: int, max_items: int):
    rows = draw(st.integers(min_rows, max_rows))
    n_items = draw(st.integers(min_items, max_items))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):  # ties everywhere
        scores = rng.choice(np.array(TIED_VALUES, dtype=np.float32), size=(rows, n_items))
    else:  # distinct-ish floats, a share of them masked to -inf as excluded movies are
        scores = rng.standard_normal((rows, n_items)).astype(np.float32)
        scores[rng.random((rows, n_items)) < draw(st.sampled_from([0.0, 0.3, 0.99]))] = -np.inf
    if draw(st.booleans()):
        scores[rng.integers(0, rows)] = -np.inf  # a user who excluded the whole catalogue
    return torch.from_numpy(scores)


def assert_is_the_rule(scores: torch.Tensor, k: int, values: torch.Tensor, items: torch.Tensor) -> None:
    """torch.topk's values; items in (score descending, item index ascending) order."""
    assert values.shape == items.shape == (scores.shape[0], k)
    assert torch.equal(values, torch.topk(scores, k, dim=1).values)
    assert torch.equal(scores.gather(1, items), values)
    expected = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    assert torch.equal(items, expected)


@settings(max_examples=300, deadline=None)
@given(scores=score_matrices(1, 7, 1, 300), k_share=st.floats(0.0, 1.0))
def test_few_rows_take_one_topk_and_follow_the_tie_rule(scores, k_share):
    k = round(k_share * scores.shape[1])
    assert not uses_two_stages(*scores.shape, k)
    assert_is_the_rule(scores, k, *top_k(scores, k))


@settings(max_examples=300, deadline=None)
@given(scores=score_matrices(8, 40, 128, 3000), k_share=st.floats(0.0, 1.0))
def test_batches_take_two_stages_where_k_is_small_and_follow_the_tie_rule(scores, k_share):
    k = max(1, int(k_share * (scores.shape[1] // 128)))
    assert uses_two_stages(*scores.shape, k)
    assert_is_the_rule(scores, k, *top_k(scores, k))


@settings(max_examples=100, deadline=None)
@given(scores=score_matrices(8, 40, 1, 500), k_share=st.floats(0.0, 1.0))
def test_batches_with_k_near_the_catalogue_follow_the_tie_rule(scores, k_share):
    k = round(k_share * scores.shape[1])
    assert_is_the_rule(scores, k, *top_k(scores, k))


def ml20m_boundaries(n_items: int) -> list[int]:
    """Every k where top_k's branches change at ``n_items``, with its neighbours, and the extremes.

    The two-stage path holds while k <= blocks // 4 (blocks = n_items // 32 whole blocks, plus a
    tail block when 32 does not divide n_items); k past the number of blocks would have no k-th
    block maximum (the defect a row-by-row variant of it had at 27k movies for 34 <= k <= 213).
    """
    blocks = n_items // ITEMS_PER_BLOCK
    edges = [1, blocks // 4, blocks, blocks + (n_items % ITEMS_PER_BLOCK > 0), n_items]
    return sorted({k for edge in edges for k in (edge - 1, edge, edge + 1) if 1 <= k <= n_items})


@pytest.mark.parametrize("rows", [1, 2, 7, 8, 9, 64])
@pytest.mark.parametrize("n_items", [27_278, 27_296, 30_001])
def test_ml20m_sized_rows_follow_the_rule_at_every_branch_boundary_of_k(rows, n_items):
    """27,278 is ML-20M's catalogue; 27,296 is a multiple of 32 (no tail block); 30,001 beyond it."""
    rng = np.random.default_rng(rows * n_items)
    scores = rng.standard_normal((rows, n_items)).astype(np.float32)
    scores[:, rng.integers(0, n_items, n_items // 10)] = -np.inf  # excluded movies
    scores[0, : n_items // 2] = 0.5  # a row of ties
    scores = torch.from_numpy(scores)
    for k in ml20m_boundaries(n_items):
        assert_is_the_rule(scores, k, *top_k(scores, k))


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 64),
    n_items=st.integers(1, 30_000),
    k_share=st.floats(0.0, 1.0),
    tied=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_shape_up_to_ml20m_follows_the_rule(rows, n_items, k_share, tied, seed):
    rng = np.random.default_rng(seed)
    if tied:
        scores = rng.choice(np.array(TIED_VALUES, dtype=np.float32), size=(rows, n_items))
    else:
        scores = rng.standard_normal((rows, n_items)).astype(np.float32)
    k = round(k_share**3 * n_items)  # most k small, as requests are, but up to the catalogue
    assert_is_the_rule(torch.from_numpy(scores), k, *top_k(torch.from_numpy(scores), k))


def test_ranked_top_k_maps_candidate_columns_back_to_items():
    values = torch.tensor([[1.0, 3.0, 3.0, -np.inf], [2.0, 2.0, 2.0, 2.0]])
    positions = torch.tensor([[40, 7, 5, 9], [3, 1, 2, 0]])
    got_values, got_items = ranked_top_k(values, 3, positions)
    assert got_values.tolist() == [[3.0, 3.0, 1.0], [2.0, 2.0, 2.0]]
    assert got_items.tolist() == [[5, 7, 40], [0, 1, 2]]


def test_k_out_of_range_is_refused():
    with pytest.raises(ValueError, match="k must be between 0 and 3"):
        top_k(torch.zeros(2, 3), 4)
