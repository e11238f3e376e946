"""The baseline: recommend the movies with the most positives."""

from __future__ import annotations

import numpy as np
import polars as pl

from two_tower_recsys.retrieval.scorers import PopularityScorer


def popularity_counts(interactions: pl.DataFrame, n_items: int) -> np.ndarray:
    """Number of positives per item index (zeros for items without any)."""
    return np.bincount(interactions.get_column("item_idx").to_numpy(), minlength=n_items).astype(np.int64)


def fit_popularity(interactions: pl.DataFrame, n_items: int) -> PopularityScorer:
    return PopularityScorer(popularity_counts(interactions, n_items))
