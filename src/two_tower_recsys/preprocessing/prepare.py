"""Raw zip -> verified processed dataset, rebuilt only when its inputs changed."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import asdict
from typing import Any

from two_tower_recsys.data.download import ensure_raw_zip
from two_tower_recsys.data.movie_content import MOVIE_CONTENT_FILES
from two_tower_recsys.data.movielens import read_movielens_zip
from two_tower_recsys.errors import DataError
from two_tower_recsys.preprocessing.processed import (
    FORMAT_VERSION,
    ProcessedDataset,
    dataset_stats,
    load_processed,
    processed_fingerprint,
    save_processed,
    titles_for,
)
from two_tower_recsys.preprocessing.rated import rated_pairs
from two_tower_recsys.preprocessing.split import FilterParams, build_splits
from two_tower_recsys.settings import DataConfig, PathsConfig

log = logging.getLogger(__name__)


def filter_params(data: DataConfig) -> FilterParams:
    return FilterParams(
        rating_threshold=data.rating_threshold,
        min_user_interactions=data.min_user_interactions,
        min_item_interactions=data.min_item_interactions,
    )


CONTENT_KEY = "movie_content"  # the fingerprint's list of content features read (tags, genome)


def prepare_dataset(
    data: DataConfig, paths: PathsConfig, *, item_features: Collection[str] = (), progress: bool = True
) -> ProcessedDataset:
    """Make sure the raw zip is present and verified, then load or build the processed dataset.

    ``item_features`` (``model.item_features``): the ones read from their own file of the zip
    (tags, genome) become columns of ``titles``. A processed dataset that has them and more is
    reused; one that lacks any is rebuilt.
    """
    raw = ensure_raw_zip(data, paths.raw_zip, progress=progress)
    params = filter_params(data)
    movie_content = [feature for feature in MOVIE_CONTENT_FILES if feature in item_features]
    fingerprint = {
        "dataset": data.name,
        "input_md5": raw.md5,
        "format_version": FORMAT_VERSION,
        **asdict(params),
        CONTENT_KEY: movie_content,
    }
    if _serves(processed_fingerprint(paths.processed_dir), fingerprint):
        try:
            dataset = load_processed(paths.processed_dir)
            log.info("reusing processed dataset in %s (same input and filters)", paths.processed_dir)
            return dataset
        except DataError as exc:
            log.warning("rebuilding processed dataset: %s", exc)
    started = time.perf_counter()
    tables = read_movielens_zip(raw.path, movie_content=movie_content)
    splits = build_splits(tables.ratings, params)
    titles = titles_for(splits.item_ids, tables.movies)
    rated = rated_pairs(tables.ratings, splits.user_ids, splits.item_ids)
    stats = {
        **dataset_stats(splits, data.name, raw.md5),
        "raw_ratings": tables.ratings.height,
        "rated_pairs": rated.height,
        **asdict(params),
    }
    save_processed(paths.processed_dir, splits, titles, stats, fingerprint, rated)
    log.info(
        "processed %s in %.1f s: %d users, %d movies, %d/%d/%d train/val/test rows -> %s",
        data.name,
        time.perf_counter() - started,
        stats["users"],
        stats["items"],
        stats["train_rows"],
        stats["val_rows"],
        stats["test_rows"],
        paths.processed_dir,
    )
    return ProcessedDataset(
        train=splits.train,
        val=splits.val,
        test=splits.test,
        user_ids=splits.user_ids,
        item_ids=splits.item_ids,
        titles=titles,
        stats=stats,
        rated=rated,
    )


def _serves(cached: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """A cache built from the same input and filters, with every content feature wanted (a cache
    older than content features read none)."""
    if cached is None:
        return False
    same_input = {k: v for k, v in cached.items() if k != CONTENT_KEY} == {
        k: v for k, v in wanted.items() if k != CONTENT_KEY
    }
    return same_input and set(wanted[CONTENT_KEY]) <= set(cached.get(CONTENT_KEY, ()))
