"""Ratings -> positives -> per-user temporal split, vectorised with polars.

Per user, positives are ordered by (timestamp, movieId): the newest goes to test, the one before
to validation, the rest to train; users with fewer than three positives go wholly to train.
Validation and test rows whose movie never appears in train are dropped (no model can score them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from two_tower_recsys.errors import DataError

TRAIN, VAL, TEST = "train", "val", "test"
SPLITS = (TRAIN, VAL, TEST)
MIN_POSITIVES_TO_HOLD_OUT = 3


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
class IndexedSplits:
    """Train/val/test positives keyed by contiguous indices (user_idx, item_idx)."""

    train: pl.DataFrame  # user_idx int32, item_idx int32, timestamp int64, rating float32
    val: pl.DataFrame
    test: pl.DataFrame
    user_ids: np.ndarray  # user_idx -> original userId, ascending
    item_ids: np.ndarray  # item_idx -> original movieId, ascending (movies present in train)

    def frames(self) -> dict[str, pl.DataFrame]:
        return {TRAIN: self.train, VAL: self.val, TEST: self.test}


def select_positives(ratings: pl.DataFrame, params: FilterParams) -> pl.DataFrame:
    """Positives of users and movies that each have enough positives (counted before filtering)."""
    positives = (
        ratings.lazy()
        .filter(pl.col("rating") >= params.rating_threshold)
        # A repeated (user, movie) rating keeps its latest; MovieLens has none, custom data might.
        .sort("timestamp")
        .unique(subset=["userId", "movieId"], keep="last", maintain_order=False)
        .with_columns(
            pl.len().over("userId").alias("user_positives"),
            pl.len().over("movieId").alias("movie_positives"),
        )
        .filter(
            (pl.col("user_positives") >= params.min_user_interactions)
            & (pl.col("movie_positives") >= params.min_item_interactions)
        )
        .drop("user_positives", "movie_positives")
        .collect()
    )
    if positives.height == 0:
        raise DataError(f"no positives left after filtering ({params.describe()}): relax the thresholds")
    return positives


def temporal_split(positives: pl.DataFrame) -> pl.DataFrame:
    """Add a ``split`` column: test = newest positive per user, val = the one before, rest train."""
    newest_first_rank = pl.int_range(pl.len(), 0, -1).over("userId") - 1
    return (
        positives.lazy()
        .sort(["userId", "timestamp", "movieId"])
        .with_columns(
            pl.when(pl.len().over("userId") < MIN_POSITIVES_TO_HOLD_OUT)
            .then(pl.lit(TRAIN))
            .when(newest_first_rank == 0)
            .then(pl.lit(TEST))
            .when(newest_first_rank == 1)
            .then(pl.lit(VAL))
            .otherwise(pl.lit(TRAIN))
            .alias("split")
        )
        .collect()
    )


def index_splits(split_positives: pl.DataFrame) -> IndexedSplits:
    """Map ids to contiguous indices over train; drop held-out rows whose movie is not in train."""
    train = split_positives.filter(pl.col("split") == TRAIN)
    user_ids = np.sort(train.get_column("userId").unique().to_numpy())
    item_ids = np.sort(train.get_column("movieId").unique().to_numpy())
    frames = {}
    for name in SPLITS:
        rows = split_positives.filter(pl.col("split") == name)
        if name != TRAIN:
            rows = rows.filter(pl.col("movieId").is_in(item_ids))
        frames[name] = pl.DataFrame(
            {
                "user_idx": np.searchsorted(user_ids, rows.get_column("userId").to_numpy()).astype(np.int32),
                "item_idx": np.searchsorted(item_ids, rows.get_column("movieId").to_numpy()).astype(np.int32),
                "timestamp": rows.get_column("timestamp"),
                "rating": rows.get_column("rating"),
            }
        )
    return IndexedSplits(
        train=frames[TRAIN],
        val=frames[VAL],
        test=frames[TEST],
        user_ids=user_ids,
        item_ids=item_ids,
    )


def build_splits(ratings: pl.DataFrame, params: FilterParams) -> IndexedSplits:
    return index_splits(temporal_split(select_positives(ratings, params)))
