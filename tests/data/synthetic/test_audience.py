"""The users: heavy-tailed activity that sums exactly, neighbouring tastes, windows in range."""

from __future__ import annotations

import numpy as np

from two_tower_recsys.data.synthetic.audience import (
    ACTIVITY_FLOOR,
    FIRST_TIMESTAMP,
    LAST_TIMESTAMP,
    _water_fill,
    make_audience,
)
from two_tower_recsys.data.synthetic.catalogue import make_catalogue
from two_tower_recsys.settings import SyntheticSpec


def test_user_activity_is_heavy_tailed(default_tables):
    users = SyntheticSpec().users
    per_user = np.bincount(default_tables.ratings["userId"].to_numpy(), minlength=users + 1)[1:]
    assert per_user.min() == ACTIVITY_FLOOR  # most users survive a 5-positive filter
    assert per_user.mean() > 1.3 * np.median(per_user)
    assert per_user.max() > 8 * np.median(per_user)


def test_water_fill_caps_then_shares_the_rest_by_largest_remainder():
    # 50 over a cap of 20: the heavy user is capped, 30 left over weights 1,1,1,5 = 3.75 x3 and
    # 18.75, floored to 3 x3 and 18; the three leftover units go to the first equal remainders.
    assert _water_fill(np.array([100.0, 1.0, 1.0, 1.0, 5.0]), total=50, cap=20).tolist() == [20, 4, 4, 4, 18]
    # Capping the first user (15 > 12) pushes the second over the cap too: a second pass.
    assert _water_fill(np.array([10.0, 9.0, 1.0]), total=30, cap=12).tolist() == [12, 12, 6]


def test_tastes_and_windows_are_consistent():
    spec = SyntheticSpec(users=500, movies=300, ratings=20_000, clusters=2)
    catalogue = make_catalogue(spec, np.random.default_rng(0))
    audience = make_audience(spec, catalogue, np.random.default_rng(1))
    assert audience.activity.sum() == spec.ratings and audience.activity.max() <= spec.movies
    assert (audience.secondary != audience.primary).all()  # with 2 clusters an offset of 2 wraps round
    np.testing.assert_allclose(audience.mixture.sum(axis=1), 1.0)
    assert (audience.window_start >= FIRST_TIMESTAMP).all()
    assert (audience.window_start + audience.window_length <= LAST_TIMESTAMP).all()
