"""The exact top-k: torch.topk's values, ties broken by the lower item index, on every path."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from two_tower_recsys.retrieval.topk import ranked_top_k, top_k, uses_two_stages

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
def test_few_rows_go_row_by_row_and_follow_the_tie_rule(scores, k_share):
    k = round(k_share * scores.shape[1])
    assert not uses_two_stages(*scores.shape, k)
    assert_is_the_rule(scores, k, *top_k(scores, k))


@settings(max_examples=300, deadline=None)
@given(scores=score_matrices(1, 7, 128, 3000), k_share=st.floats(0.0, 1.0))
def test_few_rows_with_a_small_k_take_the_block_threshold_and_follow_the_tie_rule(scores, k_share):
    k = max(1, int(k_share * (scores.shape[1] // 128)))  # the blocks leave a small share
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


def test_ranked_top_k_maps_candidate_columns_back_to_items():
    values = torch.tensor([[1.0, 3.0, 3.0, -np.inf], [2.0, 2.0, 2.0, 2.0]])
    positions = torch.tensor([[40, 7, 5, 9], [3, 1, 2, 0]])
    got_values, got_items = ranked_top_k(values, 3, positions)
    assert got_values.tolist() == [[3.0, 3.0, 1.0], [2.0, 2.0, 2.0]]
    assert got_items.tolist() == [[5, 7, 40], [0, 1, 2]]


def test_k_out_of_range_is_refused():
    with pytest.raises(ValueError, match="k must be between 0 and 3"):
        top_k(torch.zeros(2, 3), 4)
