"""The movies' tags and tag genome as one row per movie, ready to join onto ``movies.csv``.

- ``tags`` (from ``tags.csv``: userId, movieId, tag, timestamp): each tag lower-cased and
  stripped (``"Pixar "`` and ``"pixar"`` are one tag; empty tags dropped), then each movie's
  distinct tags, most-used first (by distinct users; ties by the tag's text), as a list. Every tag
  is kept here: which tags become tokens is the model's choice
  (:class:`~two_tower_recsys.models.components.content.ContentVocabulary`).
- ``genome`` (from ``genome-scores.csv``: movieId, tagId, relevance): one relevance vector per
  movie, a column per genome tag (the tag ids sorted), float16 (relevance is in [0, 1]; float16
  keeps it to 1/2048 and halves the memory: ML-20M's shape, 27,278 movies x 1,128 tags, is 62 MB).
  Read batch by batch into one growing matrix, never as a 30M-row table; a (movie, tag) pair the
  file lacks is 0.

All tags are used whatever their timestamp: see docs/content.md (leakage) for why.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import polars as pl
import pyarrow as pa

from two_tower_recsys.errors import DataError

# Content features read from a file of the zip, beside movies.csv.
MOVIE_CONTENT_FILES = {"tags": "tags.csv", "genome": "genome-scores.csv"}
TAGS_SCHEMA = {"userId": pa.int64(), "movieId": pa.int64(), "tag": pa.string()}
GENOME_SCHEMA = {"movieId": pa.int64(), "tagId": pa.int64(), "relevance": pa.float32()}
GENOME_DTYPE = np.float16
# Ids index a lookup array (id -> row): MovieLens ids are below 300,000; this bounds it at 256 MB.
MAX_GENOME_ID = (1 << 26) - 1


def tags_by_movie(tags: pl.DataFrame) -> pl.DataFrame:
    """movieId, tags (list of normalised tags, most distinct users first) from tags.csv's rows."""
    normalised = tags.select(
        "movieId", "userId", pl.col("tag").fill_null("").str.strip_chars().str.to_lowercase()
    ).filter(pl.col("tag") != "")
    users = normalised.group_by("movieId", "tag").agg(pl.col("userId").n_unique().alias("users"))
    return (
        users.sort(["movieId", "users", "tag"], descending=[False, True, False])
        .group_by("movieId", maintain_order=True)
        .agg(pl.col("tag").alias("tags"))
    )


def genome_by_movie(batches: Iterable[pa.RecordBatch], source: str) -> pl.DataFrame:
    """movieId, genome (Array(Float16, tags)) from genome-scores.csv's record batches."""
    row_of = np.full(0, -1, dtype=np.int32)  # movieId -> matrix row (-1: not seen yet)
    column_of = np.full(0, -1, dtype=np.int32)  # tagId -> matrix column
    movie_ids: list[np.ndarray] = []
    tag_ids: list[np.ndarray] = []
    matrix = np.zeros((0, 0), dtype=GENOME_DTYPE)
    n_rows = n_columns = 0
    for batch in batches:
        for name in GENOME_SCHEMA:
            if batch.column(name).null_count:
                raise DataError(f"{source}: column {name} has empty value(s)")
        movies = batch.column("movieId").to_numpy()
        tags = batch.column("tagId").to_numpy()
        relevance = batch.column("relevance").to_numpy()
        if len(movies) == 0:
            continue
        if min(movies.min(), tags.min()) < 0 or max(movies.max(), tags.max()) > MAX_GENOME_ID:
            raise DataError(f"{source}: a movieId or tagId is outside 0..{MAX_GENOME_ID:,}")
        row_of, new_movies = _assign(row_of, movies, n_rows)
        column_of, new_tags = _assign(column_of, tags, n_columns)
        movie_ids.append(new_movies)
        tag_ids.append(new_tags)
        n_rows, n_columns = n_rows + len(new_movies), n_columns + len(new_tags)
        matrix = _grown(matrix, n_rows, n_columns)
        matrix[row_of[movies], column_of[tags]] = relevance
    if n_rows == 0:
        raise DataError(f"{source} has no rows")
    columns = np.argsort(np.concatenate(tag_ids), kind="stable")  # columns in tag id order
    vectors = matrix[:n_rows, :n_columns]
    if (np.diff(columns) < 0).any():  # usually the file lists the tags in order: no copy then
        vectors = vectors[:, columns]
    return pl.DataFrame({"movieId": np.concatenate(movie_ids)}).with_columns(pl.Series("genome", vectors))


def _assign(lookup: np.ndarray, ids: np.ndarray, taken: int) -> tuple[np.ndarray, np.ndarray]:
    """``lookup`` (id -> position, -1 where unseen) extended with this batch's new ids, which get
    positions ``taken``, ``taken + 1``, ... in order of first appearance; and those new ids."""
    if ids.max() >= len(lookup):
        lookup = np.concatenate([lookup, np.full(int(ids.max()) + 1 - len(lookup), -1, dtype=lookup.dtype)])
    unseen = ids[lookup[ids] < 0]
    new, first = np.unique(unseen, return_index=True)
    new = new[np.argsort(first, kind="stable")]
    lookup[new] = np.arange(taken, taken + len(new))
    return lookup, new


def _grown(matrix: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """``matrix`` with room for ``rows`` x ``columns`` (capacity doubles: amortised copies)."""
    have_rows, have_columns = matrix.shape
    if rows <= have_rows and columns <= have_columns:
        return matrix
    grown = np.zeros(
        (
            have_rows if rows <= have_rows else max(rows, 2 * have_rows),
            have_columns if columns <= have_columns else max(columns, 2 * have_columns),
        ),
        dtype=matrix.dtype,
    )
    grown[:have_rows, :have_columns] = matrix
    return grown
