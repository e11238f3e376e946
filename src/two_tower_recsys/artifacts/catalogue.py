"""Movies without an id embedding: served from their content vector.

Two ways in, one code path (:func:`with_movies_added`):

- at training, the catalogue's movies that training did not keep (below
  ``data.min_item_interactions``, or never rated) are appended to the index;
- ``two-tower add-movies paths.new_movies=<movies.csv>`` appends new movies to a trained index.

Such a movie's vector is :meth:`ContentEncoder.encode` of its title and genres, the same content
part every trained movie's vector sums with its id embedding; nobody has rated it (popularity 0),
so it is recommended when its content matches a user's taste, and listed by ``similar``.

Rows are checked before anything is written (:func:`checked_new_movies`): a missing movieId or
title, a movieId twice in the file or already in the index, a genre the model never learned, each
is a one-line :class:`DataError` naming the file's line. The index is then rewritten through a
staging directory with its manifest last (``write_index``'s protocol): a reader sees the old index
or the new one, never a mix.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from two_tower_recsys.artifacts.store import (
    ITEM_EMBEDDINGS,
    ITEM_MAPPING,
    POPULARITY,
    TITLES,
    index_id,
    load_index,
)
from two_tower_recsys.errors import ArtifactError, DataError
from two_tower_recsys.models.components.content import ContentEncoder, encode_movies
from two_tower_recsys.preprocessing.processed import write_id_mapping
from two_tower_recsys.utils.fileio import (
    MANIFEST_NAME,
    atomic_write_json,
    commit_staged_directory,
    staged_directory,
    write_manifest,
)

MOVIE_COLUMNS = ("movieId", "title", "genres")
_HEADER_LINES = 1  # a row's line in the file: its position + 2 (the header is line 1)


def checked_new_movies(
    movies: pl.DataFrame, known_ids: np.ndarray, encoder: ContentEncoder, source: str
) -> pl.DataFrame:
    """``movies`` (movieId, title, genres) if every row can be added; else a DataError naming the line."""

    def fail(row: int, problem: str) -> DataError:
        return DataError(f"{source} line {row + 1 + _HEADER_LINES}: {problem}; nothing was added")

    if movies.height == 0:
        raise DataError(f"{source} has no movies to add")
    ids = movies.get_column("movieId")
    for row in np.flatnonzero(ids.is_null().to_numpy()).tolist()[:1]:
        raise fail(row, "movieId is missing")
    titles = movies.get_column("title")
    blank = titles.is_null() | (titles.str.strip_chars() == "")
    for row in np.flatnonzero(blank.to_numpy()).tolist()[:1]:
        raise fail(row, f"movieId {ids[row]} has no title")
    id_values = ids.to_numpy()
    first = {}
    for row, movie_id in enumerate(id_values.tolist()):
        if movie_id in first:
            raise fail(row, f"movieId {movie_id} appears twice (also on line {first[movie_id] + 2})")
        first[movie_id] = row
    already = np.flatnonzero(np.isin(id_values, known_ids))
    if len(already):
        raise fail(int(already[0]), f"movieId {id_values[already[0]]} is already in the index")
    try:
        encode_movies(movies, encoder.vocabulary, strict=True)
    except DataError as exc:  # "row N: ..." from the encoder: say which line of which file
        row_text, problem = str(exc).split(": ", 1)
        raise fail(int(row_text.removeprefix("row ")), problem) from None
    return movies.select(MOVIE_COLUMNS)


def with_movies_added(
    item_embeddings: torch.Tensor,
    item_ids: np.ndarray,
    titles: pl.DataFrame,
    popularity: np.ndarray,
    movies: pl.DataFrame,
    encoder: ContentEncoder,
) -> tuple[torch.Tensor, np.ndarray, pl.DataFrame, np.ndarray]:
    """The index's movie arrays with ``movies`` (checked) appended, each at its content vector."""
    vectors = encoder.encode(movies).to(item_embeddings.dtype)
    start = len(item_ids)
    added_titles = movies.select(
        pl.Series("item_idx", np.arange(start, start + movies.height), dtype=titles.schema["item_idx"]),
        pl.col("movieId").cast(titles.schema["movieId"]),
        pl.col("title").fill_null(""),
        pl.col("genres").fill_null(""),
    )
    return (
        torch.cat([item_embeddings, vectors]),
        np.concatenate([item_ids, movies.get_column("movieId").to_numpy().astype(item_ids.dtype)]),
        pl.concat([titles.select(added_titles.columns), added_titles]),
        np.concatenate([popularity, np.zeros(movies.height, dtype=popularity.dtype)]),
    )


def add_movies(directory: Path, movies: pl.DataFrame, source: str) -> dict[str, Any]:
    """Append ``movies`` to the trained index in ``directory``; returns the new manifest.

    Only the movie files change (embeddings, ids, titles, popularity): the other files are linked
    (or copied) into the staging directory unchanged, so the new manifest vouches for all of them.
    """
    directory = Path(directory)
    index = load_index(directory)  # verified against its manifest
    if index.movie_content is None:
        raise ArtifactError(
            f"the model in {directory} reads movie ids only: a new movie has no vector; retrain with "
            "content features, e.g. model.item_features=[id,genres,year,title]"
        )
    movies = checked_new_movies(movies, index.item_ids, index.movie_content, source)
    item_embeddings, item_ids, titles, popularity = with_movies_added(
        index.item_embeddings,
        index.item_ids,
        pl.read_parquet(directory / TITLES).sort("item_idx"),
        index.popularity,
        movies,
        index.movie_content,
    )
    rewritten = {ITEM_EMBEDDINGS, ITEM_MAPPING, TITLES, POPULARITY}
    with staged_directory(directory) as staging:
        for name in index.manifest["files"]:
            if name not in rewritten:
                _link_or_copy(directory / name, staging / name)
        torch.save(item_embeddings.contiguous(), staging / ITEM_EMBEDDINGS)
        write_id_mapping(staging / ITEM_MAPPING, item_ids)
        titles.write_parquet(staging / TITLES)
        np.save(staging / POPULARITY, popularity)
        provenance = {key: value for key, value in index.manifest.items() if key not in ("files", "index_id")}
        provenance["n_items"] = len(item_ids)
        provenance["movies_added"] = int(provenance.get("movies_added", 0)) + movies.height
        manifest = write_manifest(staging, provenance)
        manifest = {**manifest, "index_id": index_id(manifest)}
        atomic_write_json(staging / MANIFEST_NAME, manifest)
        commit_staged_directory(staging, directory)
    return manifest


def _link_or_copy(source: Path, destination: Path) -> None:
    """A hard link where the filesystem allows (the committed rename replaces the name, never the
    file's content, so the old index stays intact until then), else a copy."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)
