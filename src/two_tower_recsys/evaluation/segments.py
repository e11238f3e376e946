"""Results by segment: Recall@K and NDCG@K of the users in each slice of the test set.

Two segmentations of the evaluated users:

- ``history_length``: the user's number of train positives: <=10, 11-50, 51-200, >200;
- ``movie_popularity``: the train popularity of the user's held-out movie, after Abdollahpouri et
  al. (2019): the head is the most popular movies that together hold the first 20% of the train
  positives, the tail the least popular that together hold the last 20%, the torso the rest.
  Movies as popular as a head movie join the head, and as unpopular as a tail movie the tail, so
  ties never straddle a boundary.

Each segment's metrics get their percentile bootstrap interval over the segment's own users.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from two_tower_recsys.evaluation.bootstrap import BootstrapSettings, bootstrap_metrics
from two_tower_recsys.evaluation.metrics import per_user_values

HISTORY_LENGTH, MOVIE_POPULARITY = "history_length", "movie_popularity"
# (label, fewest, most) train positives; None: unbounded.
HISTORY_BINS: tuple[tuple[str, int, int | None], ...] = (
    ("<=10", 0, 10),
    ("11-50", 11, 50),
    ("51-200", 51, 200),
    (">200", 201, None),
)
HEAD, TORSO, TAIL = "head", "torso", "tail"
HEAD_SHARE = TAIL_SHARE = 0.2  # of the train positives


def history_length_segments(lengths: np.ndarray) -> np.ndarray:
    """The HISTORY_BINS label of each user's number of train positives.

    >>> history_length_segments(np.array([5, 10, 11, 200, 201])).tolist()
    ['<=10', '<=10', '11-50', '51-200', '>200']
    """
    lengths = np.asarray(lengths)
    labels = np.empty(len(lengths), dtype=object)
    for label, fewest, most in HISTORY_BINS:
        labels[(lengths >= fewest) & (lengths <= (most if most is not None else np.inf))] = label
    return labels


def popularity_thresholds(users_per_item: np.ndarray) -> tuple[int, int]:
    """(fewest train users of a head movie, most train users of a tail movie).

    >>> popularity_thresholds(np.array([50, 20, 12, 8, 5, 3, 1, 1]))  # 100 positives
    (50, 8)
    """
    counts = np.sort(np.asarray(users_per_item))[::-1]
    total = counts.sum()
    if total == 0:
        return 1, -1  # nothing was liked: every movie is torso
    before = np.cumsum(counts) - counts  # positives of the more popular movies
    head_min = int(counts[before < HEAD_SHARE * total].min())
    from_bottom = np.cumsum(counts[::-1])  # positives of each movie and the less popular ones
    in_tail = from_bottom <= TAIL_SHARE * total
    tail_max = int(counts[::-1][in_tail].max()) if in_tail.any() else -1
    return head_min, min(tail_max, head_min - 1)


def movie_popularity_segments(users_per_item: np.ndarray, items: np.ndarray) -> np.ndarray:
    """head / torso / tail of each of ``items`` by its number of train users."""
    head_min, tail_max = popularity_thresholds(users_per_item)
    counts = np.asarray(users_per_item)[np.asarray(items)]
    return np.where(counts >= head_min, HEAD, np.where(counts <= tail_max, TAIL, TORSO)).astype(object)


SEGMENT_ORDER = {
    HISTORY_LENGTH: [label for label, _, _ in HISTORY_BINS],
    MOVIE_POPULARITY: [HEAD, TORSO, TAIL],
}


def segment_metrics(
    ranks: np.ndarray,
    segments: dict[str, np.ndarray],
    metric_names: Sequence[str],
    settings: BootstrapSettings,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{segmentation: {segment: {"users": n, metric: value, "intervals": {metric: [low, high]}}}}``.

    ``segments[segmentation]`` labels each ranked user. An empty segment has only ``"users": 0``.
    """
    ranks = np.asarray(ranks)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for segmentation, labels in segments.items():
        results[segmentation] = {}
        for segment in SEGMENT_ORDER[segmentation]:
            members = ranks[labels == segment]
            entry: dict[str, Any] = {"users": len(members)}
            if len(members):
                means = per_user_values(members, metric_names).mean(axis=0)
                entry.update({name: float(value) for name, value in zip(metric_names, means, strict=True)})
                bounds = bootstrap_metrics({"model": members}, metric_names, settings).intervals["model"]
                entry["intervals"] = {name: list(interval) for name, interval in bounds.items()}
            results[segmentation][segment] = entry
    return results
