"""Results by segment: the segment of each user, and each segment's metrics and interval."""

import numpy as np
import pytest

from two_tower_recsys.evaluation.bootstrap import BootstrapSettings
from two_tower_recsys.evaluation.segments import (
    HISTORY_LENGTH,
    MOVIE_POPULARITY,
    history_length_segments,
    movie_popularity_segments,
    popularity_thresholds,
    segment_metrics,
)

SETTINGS = BootstrapSettings(n_resamples=200, seed=0)


def test_history_length_bins_include_their_bounds():
    lengths = np.array([1, 5, 10, 11, 50, 51, 200, 201, 5000])
    assert history_length_segments(lengths).tolist() == [
        "<=10", "<=10", "<=10", "11-50", "11-50", "51-200", "51-200", ">200", ">200"
    ]  # fmt: skip


def test_head_and_tail_hold_a_fifth_of_the_positives_each_and_ties_join_them():
    # 100 positives: the head is movie 0 (its 40 precede nothing); the tail, from the bottom:
    # 1 + 1 + 3 + 5 + 10 = 20, so the movies with <= 10 users, both 10s included.
    counts = np.array([40, 20, 10, 10, 10, 5, 3, 1, 1])
    assert popularity_thresholds(counts) == (40, 10)
    assert movie_popularity_segments(counts, np.array([0, 1, 2, 3, 8])).tolist() == [
        "head", "torso", "tail", "tail", "tail"
    ]  # fmt: skip
    # Ties at the head boundary: both 30s are head.
    assert popularity_thresholds(np.array([30, 30, 20, 10, 5, 5]))[0] == 30


def test_no_positives_make_every_movie_torso():
    assert movie_popularity_segments(np.zeros(3, dtype=int), np.array([0, 2])).tolist() == ["torso", "torso"]


def test_each_segment_has_its_users_metrics_and_interval_and_an_empty_one_only_its_count():
    ranks = np.array([0, 3, 60, 0, 1])
    segments = {
        HISTORY_LENGTH: np.array(["<=10", "<=10", "11-50", "11-50", "11-50"], dtype=object),
        MOVIE_POPULARITY: np.array(["head"] * 5, dtype=object),
    }
    result = segment_metrics(ranks, segments, ["recall@2", "ndcg@2"], SETTINGS)
    short = result[HISTORY_LENGTH]["<=10"]
    assert short["users"] == 2 and short["recall@2"] == pytest.approx(0.5)
    assert short["ndcg@2"] == pytest.approx(0.5)  # (1 + 0) / 2
    middle = result[HISTORY_LENGTH]["11-50"]
    assert middle["recall@2"] == pytest.approx(2 / 3)
    assert middle["ndcg@2"] == pytest.approx((0 + 1 + 1 / np.log2(3)) / 3)
    low, high = middle["intervals"]["recall@2"]
    assert 0.0 <= low <= 2 / 3 <= high <= 1.0
    assert result[HISTORY_LENGTH][">200"] == {"users": 0}
    assert list(result[MOVIE_POPULARITY]) == ["head", "torso", "tail"]
    assert result[MOVIE_POPULARITY]["head"]["users"] == 5
