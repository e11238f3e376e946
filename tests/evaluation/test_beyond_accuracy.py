"""Beyond-accuracy metrics of top-K lists, each against a hand computation."""

import math

import numpy as np
import pytest

from two_tower_recsys.evaluation.beyond_accuracy import (
    beyond_accuracy_metrics,
    catalogue_coverage,
    mean_popularity_percentile,
    most_popular_share,
    novelty,
    popularity_percentiles,
    self_information,
)

# Train users per movie (8 users in all): movies 3 and 4 tie at 2 users, movie 5 nobody liked.
USERS_PER_ITEM = np.array([8, 4, 1, 2, 2, 0])
N_USERS = 8
# Two users' top-3 lists; the second has one unseen movie left (-1: empty slots).
TOP = np.array([[0, 1, 3], [4, -1, -1]])


def test_percentiles_are_mid_ranks_and_ties_share_one_value():
    # sorted counts 0, 1, 2, 2, 4, 8: movie 0 has 5 below -> (5 + 0.5) / 6; movies 3, 4: 2 below, 2 equal.
    expected = [100 * 5.5 / 6, 100 * 4.5 / 6, 100 * 1.5 / 6, 100 * 3 / 6, 100 * 3 / 6, 100 * 0.5 / 6]
    assert popularity_percentiles(USERS_PER_ITEM) == pytest.approx(expected)
    assert popularity_percentiles(np.array([3, 3, 3])).tolist() == [50.0, 50.0, 50.0]


def test_coverage_counts_each_recommended_movie_once():
    assert catalogue_coverage(TOP, 6, k=3) == pytest.approx(4 / 6)  # movies 0, 1, 3, 4
    assert catalogue_coverage(TOP, 6, k=1) == pytest.approx(2 / 6)  # movies 0 and 4
    assert catalogue_coverage(np.array([[0, 0], [0, 0]]), 6, k=2) == pytest.approx(1 / 6)


def test_popularity_bias_is_a_mean_over_recommendations_skipping_empty_slots():
    percentiles = popularity_percentiles(USERS_PER_ITEM)
    # recommended: 0, 1, 3, 4 -> percentiles 91.67, 75, 50, 50
    assert mean_popularity_percentile(TOP, percentiles, k=3) == pytest.approx(
        (100 * 5.5 / 6 + 100 * 4.5 / 6 + 50 + 50) / 4
    )
    # only movie 0 is at or above the 80th percentile
    assert most_popular_share(TOP, percentiles, k=3) == pytest.approx(1 / 4)


def test_novelty_is_mean_self_information_and_an_unliked_movie_counts_as_one_user():
    assert self_information(USERS_PER_ITEM, N_USERS).tolist() == pytest.approx([0, 1, 3, 2, 2, 3])
    assert novelty(TOP, self_information(USERS_PER_ITEM, N_USERS), k=3) == pytest.approx((0 + 1 + 2 + 2) / 4)
    assert novelty(np.array([[5]]), self_information(USERS_PER_ITEM, N_USERS), k=1) == pytest.approx(
        math.log2(8)
    )


def test_empty_lists_cover_nothing_and_leave_the_means_undefined():
    empty = np.full((2, 3), -1)
    metrics = beyond_accuracy_metrics(empty, USERS_PER_ITEM, N_USERS, ks=(3,))
    assert metrics == {
        "coverage@3": 0.0,
        "popularity_percentile@3": None,
        "top20_share@3": None,
        "novelty@3": None,
    }
    assert (
        beyond_accuracy_metrics(np.empty((0, 3), dtype=int), USERS_PER_ITEM, N_USERS, ks=(3,))["novelty@3"]
        is None
    )


def test_every_metric_at_every_k():
    metrics = beyond_accuracy_metrics(TOP, USERS_PER_ITEM, N_USERS, ks=(1, 3))
    assert list(metrics) == [
        f"{name}@{k}"
        for k in (1, 3)
        for name in ("coverage", "popularity_percentile", "top20_share", "novelty")
    ]
    assert metrics["novelty@1"] == pytest.approx((0 + 2) / 2)  # movies 0 and 4
