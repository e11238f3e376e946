"""Percentile bootstrap over users: an interval for every metric, and paired model differences.

A metric is the mean over users of a per-user value (:func:`per_user_values`), so a resample of
users only matters through how often each user was drawn, and users whose values are identical
are interchangeable. Users are therefore grouped by their row of values (about 50 groups for one
model, a few thousand for a pair, whatever the number of users: the values only depend on ranks
below the largest K), and a resample is drawn as how many of its n users fall in each group: a
multinomial(n, group sizes / n) row, exactly the distribution of drawing n users with
replacement and counting them by group. One matrix product then gives every metric of a chunk
of resamples. A paired difference is resampled over the joint groups of both models, so both
models' values always come from the same resampled users.

Drawing 137k user indices per resample instead (then a bincount per resample) costs several
seconds per split at ML-20M scale; this costs about half a CPU second per split for both
models and their pair (``benchmarks/bench_intervals.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from two_tower_recsys.evaluation.metrics import per_user_values

# Group counts per chunk of resamples (int64 + the float64 copy of the product): ~64 MB.
CHUNK_ELEMENTS = 4_000_000

Interval = tuple[float, float]


@dataclass(frozen=True)
class BootstrapSettings:
    n_resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.n_resamples < 1:
            raise ValueError(f"n_resamples must be at least 1, got {self.n_resamples}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must lie strictly between 0 and 1, got {self.confidence}")

    @property
    def interval_key(self) -> str:
        """The JSON key of a paired difference's interval: ``ci95`` at 95% confidence."""
        return f"ci{self.confidence * 100:g}"

    def as_json(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class PairedDifference:
    """``metric(a) - metric(b)`` and its interval over the same resampled users."""

    diff: float
    interval: Interval


@dataclass(frozen=True)
class SplitBootstrap:
    """One split's intervals: ``intervals[model][metric]`` and ``paired["a-b"][metric]``."""

    settings: BootstrapSettings
    intervals: dict[str, dict[str, Interval]]
    paired: dict[str, dict[str, PairedDifference]]


def pair_name(first: str, second: str) -> str:
    return f"{first}-{second}"


@dataclass(frozen=True)
class UserGroups:
    """Users with identical per-user values: ``sizes[g]`` users share row ``values[g]``."""

    values: np.ndarray  # n_groups x M
    sizes: np.ndarray  # int64 users per group
    representatives: np.ndarray  # one user position per group


def group_users(values: np.ndarray, labels: Sequence[np.ndarray]) -> UserGroups:
    """Group users by ``labels`` (arrays of small ints, one per model), combined.

    Each label must determine the user's row of ``values`` for that model; combining them
    determines the whole row.
    """
    n_users = values.shape[0]
    if n_users < 1:
        raise ValueError("cannot bootstrap over zero users")
    key = np.zeros(n_users, dtype=np.int64)
    for label in labels:
        # Re-densified after every model, so the combined key stays below n_users**2.
        _, key = np.unique(key * (int(label.max()) + 1) + label, return_inverse=True)
        key = key.reshape(-1)
    _, representatives, sizes = np.unique(key, return_index=True, return_counts=True)
    return UserGroups(values[representatives], sizes.astype(np.int64), representatives)


def value_labels(ranks: np.ndarray, metric_names: Sequence[str]) -> np.ndarray:
    """A small int per user, equal for two users exactly when their per-user metric values are.

    Computed over the distinct ranks only (at most the catalogue size), so it is cheap at any
    number of users.
    """
    distinct_ranks, rank_of_user = np.unique(np.asarray(ranks), return_inverse=True)
    rows = per_user_values(distinct_ranks, metric_names)
    _, label_of_rank = np.unique(rows, axis=0, return_inverse=True)
    return label_of_rank.reshape(-1)[rank_of_user.reshape(-1)]


def resampled_group_counts(sizes: np.ndarray, settings: BootstrapSettings) -> Iterator[np.ndarray]:
    """How many of the n resampled users fall in each group: ``n_resamples`` rows, by chunk."""
    n_users = int(sizes.sum())
    rng = np.random.default_rng(settings.seed)
    shares = sizes / n_users
    per_chunk = max(1, CHUNK_ELEMENTS // len(sizes))
    for start in range(0, settings.n_resamples, per_chunk):
        rows = min(per_chunk, settings.n_resamples - start)
        yield rng.multinomial(n_users, shares, size=rows)


def resampled_means(groups: UserGroups, settings: BootstrapSettings) -> np.ndarray:
    """Column means of the users' values in each resample of users: n_resamples x M."""
    n_users = int(groups.sizes.sum())
    means = np.empty((settings.n_resamples, groups.values.shape[1]))
    row = 0
    for counts in resampled_group_counts(groups.sizes, settings):
        means[row : row + len(counts)] = (counts @ groups.values) / n_users
        row += len(counts)
    return means


def percentile_bounds(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The central ``confidence`` share of ``samples`` along axis 0: (low, high) per column."""
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail], axis=0)
    return low, high


def bootstrap_metrics(
    ranks_by_model: Mapping[str, np.ndarray],
    metric_names: Sequence[str],
    settings: BootstrapSettings,
    pairs: Sequence[tuple[str, str]] = (),
) -> SplitBootstrap:
    """Intervals of every model's metrics on one split, and of ``a - b`` for each pair (a, b).

    Every model must be ranked on the same users in the same order (one evaluation task). A
    model's intervals depend only on its own ranks and ``settings``, never on the models beside
    it; a pair's resamples are drawn over both models' values at once.
    """
    sizes = {model: len(ranks) for model, ranks in ranks_by_model.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"models were ranked on different users: {sizes}")
    for first, second in pairs:
        missing = {first, second} - set(ranks_by_model)
        if missing:
            raise ValueError(f"cannot pair {first} with {second}: no ranks for {sorted(missing)}")
    values = {model: per_user_values(ranks, metric_names) for model, ranks in ranks_by_model.items()}
    labels = {model: value_labels(ranks, metric_names) for model, ranks in ranks_by_model.items()}
    intervals = {
        model: _by_metric(metric_names, *metric_bounds(values[model], [labels[model]], settings))
        for model in ranks_by_model
    }
    paired = {
        pair_name(first, second): paired_difference(
            values[first] - values[second], [labels[first], labels[second]], metric_names, settings
        )
        for first, second in pairs
    }
    return SplitBootstrap(settings=settings, intervals=intervals, paired=paired)


def paired_difference(
    differences: np.ndarray,
    labels: Sequence[np.ndarray],
    metric_names: Sequence[str],
    settings: BootstrapSettings,
) -> dict[str, PairedDifference]:
    """Each metric's mean per-user difference (a users x metrics matrix) and its interval, users
    grouped by ``labels`` (one :func:`value_labels` array per run the differences come from).

    The difference is resampled as its own column (not as the difference of two resampled
    means), so a model paired with itself gives exactly 0.
    """
    bounds = _by_metric(metric_names, *metric_bounds(differences, labels, settings))
    return {
        name: PairedDifference(float(diff), bounds[name])
        for name, diff in zip(metric_names, _column_means(differences), strict=True)
    }


def metric_bounds(
    values: np.ndarray, labels: Sequence[np.ndarray], settings: BootstrapSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each column mean of ``values``, users grouped by ``labels``.

    With no users the metrics are NaN (a mean of nothing), and so are their bounds.
    """
    if values.shape[0] == 0:
        return np.full(values.shape[1], np.nan), np.full(values.shape[1], np.nan)
    return percentile_bounds(resampled_means(group_users(values, labels), settings), settings.confidence)


def _column_means(values: np.ndarray) -> np.ndarray:
    return values.mean(axis=0) if len(values) else np.full(values.shape[1], np.nan)


def _by_metric(names: Sequence[str], low: np.ndarray, high: np.ndarray) -> dict[str, Interval]:
    return {name: (float(lo), float(hi)) for name, lo, hi in zip(names, low, high, strict=True)}


def recall_curve_band(
    ranks: np.ndarray, max_k: int, settings: BootstrapSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Interval of Recall@K for K = 1..max_k, each K over the same resamples of users.

    Grouping users by min(rank, max_k) makes a resample's group counts its rank histogram, and
    its cumulative sum the resample's whole Recall@K curve.
    """
    if len(ranks) == 0:
        return np.full(max_k, np.nan), np.full(max_k, np.nan)
    clipped = np.minimum(np.asarray(ranks), max_k)
    sizes = np.bincount(clipped, minlength=max_k + 1)
    present = np.flatnonzero(sizes)  # multinomial rows only over ranks some user has
    curves = np.empty((settings.n_resamples, max_k))
    row = 0
    for counts in resampled_group_counts(sizes[present], settings):
        histograms = np.zeros((len(counts), max_k + 1), dtype=np.int64)
        histograms[:, present] = counts
        curves[row : row + len(counts)] = np.cumsum(histograms[:, :max_k], axis=1) / len(clipped)
        row += len(counts)
    return percentile_bounds(curves, settings.confidence)
