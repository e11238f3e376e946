"""Ratings -> positives -> per-user temporal split, vectorised with numpy.

Per user, positives are ordered by (timestamp, movieId): the newest goes to test, the one before
to validation, the rest to train; users with fewer than three positives go wholly to train.
Validation and test rows whose movie never appears in train are dropped (no model can score them).

Ids are first turned into dense codes, so every per-user or per-movie quantity is a ``bincount``
and the per-user order is one argsort of a packed integer key: at ML-20M scale the whole split
is a few seconds and no per-user Python code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from two_tower_recsys.errors import DataError

TRAIN, VAL, TEST = "train", "val", "test"
SPLITS = (TRAIN, VAL, TEST)
MIN_POSITIVES_TO_HOLD_OUT = 3
_SPLIT_CODES = {TRAIN: 0, VAL: 1, TEST: 2}


@dataclass(frozen=True)
class FilterParams:
    rating_threshold: float = 4.0
    min_user_interactions: int = 5
    min_item_interactions: int = 5

    def describe(self) -> str:
        return (
            f"data.rating_threshold={self.rating_threshold}, "
            f"data.min_user_interactions={self.min_user_interactions}, "
            f"data.min_item_interactions={self.min_item_interactions}"
        )


@dataclass(frozen=True)
class Positives:
    """Positive ratings with users and movies as dense codes (code -> original id in *_ids)."""

    user_codes: np.ndarray
    movie_codes: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray
    user_ids: np.ndarray
    movie_ids: np.ndarray

    def take(self, rows: np.ndarray) -> Positives:
        return Positives(
            self.user_codes[rows],
            self.movie_codes[rows],
            self.timestamps[rows],
            self.ratings[rows],
            self.user_ids,
            self.movie_ids,
        )

    def __len__(self) -> int:
        return len(self.user_codes)


@dataclass(frozen=True)
class IndexedSplits:
    """Train/val/test positives keyed by contiguous indices (user_idx, item_idx)."""

    train: pl.DataFrame  # user_idx int32, item_idx int32, timestamp int64, rating float32
    val: pl.DataFrame
    test: pl.DataFrame
    user_ids: np.ndarray  # user_idx -> original userId, ascending
    item_ids: np.ndarray  # item_idx -> original movieId, ascending (movies present in train)

    def frames(self) -> dict[str, pl.DataFrame]:
        return {TRAIN: self.train, VAL: self.val, TEST: self.test}


def factorize(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, unique ids): codes index the ascending unique ids.

    MovieLens ids are small non-negative integers, so a presence table (O(n)) replaces the sort
    that ``np.unique`` needs; other ids fall back to ``np.unique``.
    """
    if len(ids) and ids.min() >= 0 and ids.max() < 4 * len(ids) + 1_000_000:
        present = np.zeros(int(ids.max()) + 1, dtype=bool)
        present[ids] = True
        code_of_id = np.cumsum(present) - 1
        return code_of_id[ids], np.flatnonzero(present)
    unique, codes = np.unique(ids, return_inverse=True)
    return codes, unique


def _latest_per_pair(positives: Positives) -> np.ndarray | None:
    """Rows to keep so that each (user, movie) appears once, with its latest rating; None: all.

    grouplens files are sorted by (userId, movieId) with no repeats, which one linear pass
    proves; other data pays a sort, and only data with repeats the two-key sort that finds
    the latest rating of each pair.
    """
    pair = positives.user_codes.astype(np.int64) * len(positives.movie_ids) + positives.movie_codes
    if np.all(pair[1:] > pair[:-1]):
        return None
    sorted_pairs = np.sort(pair)
    if not np.any(sorted_pairs[1:] == sorted_pairs[:-1]):
        return None
    order = np.lexsort((positives.timestamps, pair))
    sorted_pairs = pair[order]
    last_of_pair = np.append(sorted_pairs[1:] != sorted_pairs[:-1], True)
    return np.sort(order[last_of_pair])


def _positives_and_kept_rows(
    ratings: pl.DataFrame, params: FilterParams
) -> tuple[Positives, np.ndarray | None]:
    """All positives (one per pair) and the rows that pass the count filters (None: all do).

    Returning rows instead of filtered copies lets the caller gather each column only once.
    """
    rated_high = ratings.filter(pl.col("rating") >= params.rating_threshold)  # multi-threaded
    if rated_high.height == 0:
        raise DataError(f"no positives left after filtering ({params.describe()}): relax the thresholds")
    user_codes, user_ids = factorize(rated_high.get_column("userId").to_numpy())
    movie_codes, movie_ids = factorize(rated_high.get_column("movieId").to_numpy())
    positives = Positives(
        user_codes,
        movie_codes,
        rated_high.get_column("timestamp").to_numpy(),
        rated_high.get_column("rating").to_numpy(),
        user_ids,
        movie_ids,
    )
    unique_rows = _latest_per_pair(positives)
    if unique_rows is not None:
        positives = positives.take(unique_rows)
    user_counts = np.bincount(positives.user_codes, minlength=len(user_ids))
    movie_counts = np.bincount(positives.movie_codes, minlength=len(movie_ids))
    enough = (user_counts[positives.user_codes] >= params.min_user_interactions) & (
        movie_counts[positives.movie_codes] >= params.min_item_interactions
    )
    if not enough.any():
        raise DataError(f"no positives left after filtering ({params.describe()}): relax the thresholds")
    return positives, None if enough.all() else np.flatnonzero(enough)


def _bits(value: int) -> int:
    return max(int(value).bit_length(), 1)


def chronological_order(positives: Positives, rows: np.ndarray | None = None) -> np.ndarray:
    """``rows`` (default: all) ordered by (user, timestamp, movieId).

    One argsort of a packed int64 key when the three fit in 63 bits (ML-20M needs 18 + 30 + 15).
    """
    if rows is None:
        rows = np.arange(len(positives))
    users, timestamps, movies = (
        positives.user_codes[rows],
        positives.timestamps[rows],
        positives.movie_codes[rows],
    )
    times = timestamps - timestamps.min()
    movie_bits = _bits(len(positives.movie_ids) - 1)
    time_bits = _bits(int(times.max()))
    if _bits(len(positives.user_ids) - 1) + time_bits + movie_bits <= 63:
        key = (users.astype(np.int64) << (time_bits + movie_bits)) | (times << movie_bits)
        key |= movies  # codes ascend with movieId, so ties on time break by movieId
        return rows[np.argsort(key)]  # keys are unique (one row per pair): any sort kind is exact
    return rows[np.lexsort((movies, timestamps, users))]


def split_codes(user_codes_in_order: np.ndarray, n_users: int) -> np.ndarray:
    """0/1/2 (train/val/test) for rows already in (user, time) order."""
    per_user = np.bincount(user_codes_in_order, minlength=n_users)
    last_row_of_user = np.cumsum(per_user) - 1
    newest_first_rank = last_row_of_user[user_codes_in_order] - np.arange(len(user_codes_in_order))
    held_out = per_user[user_codes_in_order] >= MIN_POSITIVES_TO_HOLD_OUT
    codes = np.zeros(len(user_codes_in_order), dtype=np.int8)
    codes[held_out & (newest_first_rank == 1)] = _SPLIT_CODES[VAL]
    codes[held_out & (newest_first_rank == 0)] = _SPLIT_CODES[TEST]
    return codes


def index_splits(positives: Positives, codes: np.ndarray) -> IndexedSplits:
    """Drop held-out rows of movies unseen in train; re-index users and movies over train."""
    is_train = codes == _SPLIT_CODES[TRAIN]
    movie_in_train = np.bincount(positives.movie_codes[is_train], minlength=len(positives.movie_ids)) > 0
    keep = is_train | movie_in_train[positives.movie_codes]
    user_in_train = np.bincount(positives.user_codes[is_train], minlength=len(positives.user_ids)) > 0
    user_index = (np.cumsum(user_in_train) - 1).astype(np.int32)
    item_index = (np.cumsum(movie_in_train) - 1).astype(np.int32)
    frames = {}
    for name, code in _SPLIT_CODES.items():
        rows = np.flatnonzero(keep & (codes == code))
        frames[name] = pl.DataFrame(
            {
                "user_idx": user_index[positives.user_codes[rows]],
                "item_idx": item_index[positives.movie_codes[rows]],
                "timestamp": positives.timestamps[rows].astype(np.int64),
                "rating": positives.ratings[rows].astype(np.float32),
            }
        )
    return IndexedSplits(
        train=frames[TRAIN],
        val=frames[VAL],
        test=frames[TEST],
        user_ids=positives.user_ids[user_in_train],
        item_ids=positives.movie_ids[movie_in_train],
    )


def build_splits(ratings: pl.DataFrame, params: FilterParams) -> IndexedSplits:
    positives, kept_rows = _positives_and_kept_rows(ratings, params)
    positives = positives.take(chronological_order(positives, kept_rows))
    return index_splits(positives, split_codes(positives.user_codes, len(positives.user_ids)))
