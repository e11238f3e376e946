import numpy as np
import pytest
import torch

from two_tower_recsys.retrieval.seen import SeenItems, mask_seen, sorted_unique


def test_batch_positions_match_a_python_reference():
    rng = np.random.default_rng(1)
    users = rng.integers(0, 20, size=200)
    items = rng.integers(0, 50, size=200)
    seen = SeenItems.from_pairs(users, items, n_users=25)  # users 20..24 have no history
    batch = torch.tensor([3, 22, 3, 0, 19])
    rows, cols = seen.batch_positions(batch)
    got = sorted(zip(rows.tolist(), cols.tolist(), strict=True))
    expected = sorted(
        {(row, int(i)) for row, u in enumerate(batch.tolist()) for i in items[users == u]}
    )  # a repeated pair counts once
    assert got == expected


def test_items_of_sorted_per_user():
    seen = SeenItems.from_pairs(np.array([1, 0, 1, 1]), np.array([5, 2, 3, 4]), n_users=3)
    assert seen.items_of(1).tolist() == [3, 4, 5]
    assert seen.items_of(2).tolist() == []


def test_mask_seen_sets_minus_inf_only_on_seen_items():
    seen = SeenItems.from_pairs(np.array([0, 1]), np.array([2, 0]), n_users=2)
    scores = torch.ones(2, 3)
    mask_seen(scores, torch.tensor([0, 1]), seen)
    assert torch.isinf(scores).tolist() == [[False, False, True], [True, False, False]]


@pytest.mark.parametrize("size", [0, 1, 2, 1_000])
def test_sorted_unique_is_numpys_unique(size):
    keys = np.random.default_rng(size).integers(0, 50, size) * 1_000_003  # repeats, unsorted
    got = sorted_unique(keys)
    assert got.dtype == keys.dtype and np.array_equal(got, np.unique(keys))
