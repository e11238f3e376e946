"""The processed dataset on disk (``data/processed/``) and in memory.

Files: ``train/val/test.parquet`` (user_idx, item_idx, timestamp, rating), ``rated.parquet``
(user_idx, item_idx of every rating, positive or not, of an indexed user on an indexed movie: what
serving excludes), ``user2idx.json`` and ``item2idx.json`` (original id -> index),
``titles.parquet`` (item_idx, movieId, title, genres, and the ``tags`` / ``genome`` columns when they
were read: :mod:`~two_tower_recsys.data.movie_content`), ``stats.json`` and ``manifest.json``. The
manifest records the fingerprint (input checksum, filter parameters, the content features read)
the files were built from and every file's sha256; it is written last, and loading verifies it,
so a half-written or stale directory is never trusted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from two_tower_recsys.errors import DataError
from two_tower_recsys.preprocessing.split import SPLITS, TEST, TRAIN, VAL, IndexedSplits
from two_tower_recsys.utils.fileio import (
    commit_staged_directory,
    read_json,
    staged_directory,
    verify_manifest,
    write_manifest,
)

FORMAT_VERSION = 2  # 2: rated.parquet
STATS_FILE = "stats.json"
TITLES_FILE = "titles.parquet"
RATED_FILE = "rated.parquet"


@dataclass(frozen=True)
class ProcessedDataset:
    train: pl.DataFrame
    val: pl.DataFrame
    test: pl.DataFrame
    user_ids: np.ndarray  # user_idx -> userId
    item_ids: np.ndarray  # item_idx -> movieId
    # item_idx, movieId, title, genres (+ tags, genome if read): one row per item, in item_idx order
    titles: pl.DataFrame
    stats: dict[str, Any]
    # user_idx, item_idx of every rating (positive or not); None: only the positives are known.
    rated: pl.DataFrame | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def split(self, name: str) -> pl.DataFrame:
        return {TRAIN: self.train, VAL: self.val, TEST: self.test}[name]


def titles_for(item_ids: np.ndarray, movies: pl.DataFrame) -> pl.DataFrame:
    catalogue = pl.DataFrame({"item_idx": np.arange(len(item_ids), dtype=np.int32), "movieId": item_ids})
    filled = [pl.col("title").fill_null(""), pl.col("genres").fill_null("")]
    if "tags" in movies.columns:  # no tags: an empty list; a missing genome stays null (neutral)
        filled.append(pl.col("tags").fill_null(pl.lit([], dtype=pl.List(pl.Utf8))))
    return catalogue.join(movies, on="movieId", how="left", maintain_order="left").with_columns(filled)


def dataset_stats(splits: IndexedSplits, dataset_name: str, input_md5: str) -> dict[str, Any]:
    return {
        "name": dataset_name,
        "input_md5": input_md5,
        "users": len(splits.user_ids),
        "items": len(splits.item_ids),
        "train_rows": splits.train.height,
        "val_rows": splits.val.height,
        "test_rows": splits.test.height,
    }


def save_processed(
    directory: Path,
    splits: IndexedSplits,
    titles: pl.DataFrame,
    stats: dict[str, Any],
    fingerprint: dict[str, Any],
    rated: pl.DataFrame,
) -> None:
    """Write the dataset into a staging directory, then commit it with its manifest last."""
    with staged_directory(directory) as staging:
        for name, frame in splits.frames().items():
            frame.write_parquet(staging / f"{name}.parquet", statistics=False)
        titles.write_parquet(staging / TITLES_FILE)
        rated.write_parquet(staging / RATED_FILE, statistics=False)
        write_id_mapping(staging / "user2idx.json", splits.user_ids)
        write_id_mapping(staging / "item2idx.json", splits.item_ids)
        (staging / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
        write_manifest(staging, {"format_version": FORMAT_VERSION, "fingerprint": fingerprint})
        commit_staged_directory(staging, directory)


def write_id_mapping(path: Path, ids: np.ndarray) -> None:
    """``{"<original id>": index}``: the original names user2idx.json / item2idx.json."""
    mapping = {str(original): index for index, original in enumerate(ids.tolist())}
    path.write_text(json.dumps(mapping, separators=(",", ":")))


def read_id_mapping(path: Path) -> np.ndarray:
    mapping = read_json(path)
    ids = np.empty(len(mapping), dtype=np.int64)
    ids[list(mapping.values())] = [int(key) for key in mapping]
    return ids


def processed_fingerprint(directory: Path) -> dict[str, Any] | None:
    """The fingerprint the directory was built from, or None when there is no complete dataset."""
    try:
        manifest = read_json(directory / "manifest.json")
    except (OSError, ValueError):
        return None
    if manifest.get("format_version") != FORMAT_VERSION:
        return None
    return manifest.get("fingerprint")


def load_processed(directory: Path) -> ProcessedDataset:
    """Load and verify (checksums of every file) a processed dataset."""
    try:
        verify_manifest(directory, "processed dataset")
    except ValueError as exc:
        raise DataError(str(exc)) from None
    frames = {name: pl.read_parquet(directory / f"{name}.parquet") for name in SPLITS}
    return ProcessedDataset(
        train=frames[TRAIN],
        val=frames[VAL],
        test=frames[TEST],
        user_ids=read_id_mapping(directory / "user2idx.json"),
        item_ids=read_id_mapping(directory / "item2idx.json"),
        titles=pl.read_parquet(directory / TITLES_FILE),
        stats=read_json(directory / STATS_FILE),
        rated=pl.read_parquet(directory / RATED_FILE),
    )
