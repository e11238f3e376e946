"""Each user's most recent positives as a padded index matrix: what a sequence user tower reads.

Order is the split's order, (timestamp, movieId) per user, so the history of a split ends exactly
where the split's held-out movie begins: validation reads train positives only; test reads train
plus the validation movie; serving reads everything. Built with one sort and array indexing,
no per-user Python code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from two_tower_recsys.preprocessing.processed import ProcessedDataset
from two_tower_recsys.preprocessing.split import TEST, TRAIN, VAL

PADDING_ITEM = 0  # any valid index: a causal tower never reads positions past a row's length
SERVING = "serving"  # every known positive: the vectors published for inference

# The splits whose positives a history may contain, by the split it is used for.
_KNOWN_BEFORE = {VAL: (TRAIN,), TEST: (TRAIN, VAL), SERVING: (TRAIN, VAL, TEST)}


@dataclass(frozen=True)
class UserHistories:
    """``items[u, :lengths[u]]``: user u's most recent positives, oldest first (item indices)."""

    items: torch.Tensor  # [n_users, width] int64, right-padded with PADDING_ITEM
    lengths: torch.Tensor  # [n_users] int64

    @property
    def n_users(self) -> int:
        return len(self.lengths)

    def of(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.items[users], self.lengths[users]


def recent_positives(positives: pl.DataFrame, n_users: int, max_length: int) -> UserHistories:
    """The last ``max_length`` rows per user of ``positives`` (user_idx, item_idx, timestamp).

    Ties on timestamp break by item_idx, which ascends with movieId: the split's own order.
    """
    return most_recent(*_in_split_order(positives), n_users, max_length)


def _in_split_order(positives: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(user_idx, item_idx) sorted by user, then (timestamp, item_idx): the split's own order."""
    ordered = positives.select("user_idx", "timestamp", "item_idx").sort(
        ["user_idx", "timestamp", "item_idx"]
    )
    users = ordered.get_column("user_idx").to_numpy().astype(np.int64)
    return users, ordered.get_column("item_idx").to_numpy().astype(np.int64)


def training_windows(positives: pl.DataFrame, n_users: int, max_inputs: int) -> UserHistories:
    """Every positive but each user's first as a next-movie target exactly once.

    Each user's positives (split order) are cut, from the newest end, into windows of at most
    ``max_inputs`` targets; a window's row holds the movie before its first target, then its
    targets, so it is at most ``max_inputs + 1`` long and its inputs are ``row[:-1]``. The newest
    window is what :func:`recent_positives` with ``max_inputs + 1`` gives; the older ones add
    the rest of a long history instead of dropping it. Rows: windows, users ascending.
    """
    if max_inputs <= 0:
        raise ValueError(f"max_inputs must be positive, got {max_inputs}")
    users, items = _in_split_order(positives)
    counts = np.bincount(users, minlength=n_users)
    first_row = np.cumsum(counts) - counts
    n_windows = np.where(counts >= 2, -(-(counts - 1) // max_inputs), 0)  # ceil((n - 1) / L)
    window_user = np.repeat(np.arange(n_users), n_windows)
    newest_first = np.arange(len(window_user)) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
    n = counts[window_user]
    last_target = n - 1 - newest_first * max_inputs
    first_target = np.maximum(1, n - (newest_first + 1) * max_inputs)
    return window_rows(items, first_row[window_user], first_target, last_target, max_inputs)


def window_rows(
    items: np.ndarray,
    user_start: np.ndarray,
    first_target: np.ndarray,
    last_target: np.ndarray,
    max_inputs: int,
) -> UserHistories:
    """One padded row per window: the movie before its first target, then its targets.

    ``items``: every user's positives, users ascending, each in split order; per window, where its
    user's positives start in ``items`` and its first and last target (positions in the user's list).
    """
    lengths = last_target - first_target + 2
    window = np.repeat(np.arange(len(lengths)), lengths)
    offset = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    source = np.repeat(user_start + first_target - 1, lengths) + offset
    padded = np.full((len(lengths), max_inputs + 1), PADDING_ITEM, dtype=np.int64)
    padded[window, offset] = items[source]
    return UserHistories(torch.from_numpy(padded), torch.from_numpy(lengths.astype(np.int64)))


def most_recent(rows: np.ndarray, items: np.ndarray, n_rows: int, max_length: int) -> UserHistories:
    """The last ``max_length`` items of each row, oldest first, padded.

    ``rows`` (ascending) and ``items`` list each row's items in time order, oldest first. Used for
    the histories of the splits and for the fresh histories sent with requests alike.
    """
    if max_length <= 0:
        raise ValueError(f"max_length must be positive, got {max_length}")
    counts = np.bincount(rows, minlength=n_rows)
    first_row = np.cumsum(counts) - counts
    skipped = np.maximum(counts - max_length, 0)  # older items beyond the window
    position = np.arange(len(rows)) - first_row[rows] - skipped[rows]
    kept = position >= 0
    width = int(min(max_length, counts.max(initial=0)))
    padded = np.full((n_rows, max(width, 1)), PADDING_ITEM, dtype=np.int64)
    padded[rows[kept], position[kept]] = items[kept]
    return UserHistories(torch.from_numpy(padded), torch.from_numpy(np.minimum(counts, max_length)))


def histories_for(dataset: ProcessedDataset, split: str, max_length: int) -> UserHistories:
    """What a user tower may read when ``split`` is scored (:data:`SERVING`: every known positive)."""
    if split not in _KNOWN_BEFORE:
        raise ValueError(f"no histories for split {split!r}; choose one of {', '.join(_KNOWN_BEFORE)}")
    frames = [
        dataset.split(name).select("user_idx", "item_idx", "timestamp") for name in _KNOWN_BEFORE[split]
    ]
    return recent_positives(pl.concat(frames), dataset.n_users, max_length)
