"""Beyond accuracy: what the test users' top-K lists recommend, whatever they hit.

Every function takes ``top_items`` (users x K item indices, best first; -1 marks an empty slot,
when a user has fewer unseen movies than K) and reads its first ``k`` columns. Means are over all
recommendations (every non-empty slot of every list), so a user with a short list weighs less;
with no recommendation at all the mean is undefined (None).

- coverage@K: the share of the catalogue recommended to at least one user;
- popularity_percentile@K: mean popularity percentile of the recommended movies, where a movie's
  percentile is 100 x (movies with fewer train users + half of the movies with as many, itself
  included) / movies: the mid-rank percentile, so tied movies share one value;
- top20_share@K: the share of recommendations among the 20% most popular movies (percentile >= 80);
- novelty@K: mean self-information -log2(train users of the movie / train users); a movie no
  train user liked counts as liked by one, so its information is log2(train users).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MOST_POPULAR_PERCENTILE = 80.0  # "the 20% most popular movies"


def popularity_percentiles(users_per_item: np.ndarray) -> np.ndarray:
    """Mid-rank percentile of each movie's popularity, in [0, 100].

    >>> popularity_percentiles(np.array([0, 5, 5, 9])).tolist()
    [12.5, 50.0, 50.0, 87.5]
    """
    counts = np.asarray(users_per_item)
    ordered = np.sort(counts)
    below = np.searchsorted(ordered, counts, side="left")
    at_or_below = np.searchsorted(ordered, counts, side="right")
    return 100.0 * (below + 0.5 * (at_or_below - below)) / max(len(counts), 1)


def self_information(users_per_item: np.ndarray, n_users: int) -> np.ndarray:
    """-log2(share of train users who liked each movie), a movie nobody liked counting as one user."""
    return -np.log2(np.maximum(np.asarray(users_per_item), 1) / n_users)


def _recommended(top_items: np.ndarray, k: int) -> np.ndarray:
    """The non-empty slots of the top-``k`` lists, flattened."""
    slots = np.asarray(top_items)[:, :k].ravel()
    return slots[slots >= 0]


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def catalogue_coverage(top_items: np.ndarray, n_items: int, k: int) -> float:
    """Share of the ``n_items`` movies in at least one top-``k`` list (0.0 for no recommendation)."""
    return len(np.unique(_recommended(top_items, k))) / n_items


def mean_popularity_percentile(top_items: np.ndarray, percentiles: np.ndarray, k: int) -> float | None:
    return _mean_or_none(percentiles[_recommended(top_items, k)])


def most_popular_share(top_items: np.ndarray, percentiles: np.ndarray, k: int) -> float | None:
    return _mean_or_none((percentiles[_recommended(top_items, k)] >= MOST_POPULAR_PERCENTILE).astype(float))


def novelty(top_items: np.ndarray, information: np.ndarray, k: int) -> float | None:
    return _mean_or_none(information[_recommended(top_items, k)])


def beyond_accuracy_metrics(
    top_items: np.ndarray, users_per_item: np.ndarray, n_users: int, ks: Sequence[int]
) -> dict[str, float | None]:
    """Every metric at every K: {"coverage@10": ..., "popularity_percentile@10": ..., ...}.

    ``users_per_item``: train users who liked each movie; ``n_users``: train users.
    """
    percentiles = popularity_percentiles(users_per_item)
    information = self_information(users_per_item, n_users)
    n_items = len(users_per_item)
    metrics: dict[str, float | None] = {}
    for k in ks:
        metrics[f"coverage@{k}"] = catalogue_coverage(top_items, n_items, k)
        metrics[f"popularity_percentile@{k}"] = mean_popularity_percentile(top_items, percentiles, k)
        metrics[f"top20_share@{k}"] = most_popular_share(top_items, percentiles, k)
        metrics[f"novelty@{k}"] = novelty(top_items, information, k)
    return metrics
