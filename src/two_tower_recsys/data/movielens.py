"""Read a MovieLens-format zip: ``<folder>/ratings.csv`` and ``<folder>/movies.csv``, and on
request the movies' tags (``tags.csv``) and tag genome (``genome-scores.csv``).

The folder name differs between releases (ml-20m/, ml-latest-small/, ...), so the members are
found by file name. Columns are typed on read with pyarrow (multi-threaded, about 2 s for the
20M-row ML-20M ratings); anything malformed is a :class:`DataError` naming the file and column.
Tags and the genome become columns of ``movies`` (:mod:`~two_tower_recsys.data.movie_content`).
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from two_tower_recsys.data.movie_content import (
    GENOME_SCHEMA,
    MOVIE_CONTENT_FILES,
    TAGS_SCHEMA,
    genome_by_movie,
    tags_by_movie,
)
from two_tower_recsys.errors import DataError

log = logging.getLogger(__name__)

RATINGS_SCHEMA = {
    "userId": pa.int64(),
    "movieId": pa.int64(),
    "rating": pa.float32(),
    "timestamp": pa.int64(),
}
MOVIES_SCHEMA = {"movieId": pa.int64(), "title": pa.string(), "genres": pa.string()}
_CSV_BLOCK_BYTES = 16 << 20
# genome-scores.csv at ML-20M's shape (30.8M rows): 4 MB blocks peak at 280 MB resident while
# reading, 16 MB ones at 530 MB, in the same time.
_GENOME_BLOCK_BYTES = 4 << 20


@dataclass(frozen=True)
class MovieLensTables:
    ratings: pl.DataFrame  # userId, movieId, rating, timestamp
    # movieId, title, genres; and ``tags`` / ``genome`` when read (see read_movielens_zip)
    movies: pl.DataFrame


def read_movielens_zip(path: Path, *, movie_content: Collection[str] = ()) -> MovieLensTables:
    """``movie_content``: the features of :data:`MOVIE_CONTENT_FILES` to read into ``movies`` as
    columns (``tags``: list of tags, ``genome``: relevance array; null where a movie has none).
    A zip without a requested file is a one-line DataError naming the feature and the file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a zip file")
    try:
        with zipfile.ZipFile(path) as archive:
            content_members = _content_members(archive, path, movie_content)
            ratings_member = _find_member(archive, "ratings.csv")
            if ratings_member is None:
                raise DataError(f"{path} contains no ratings.csv")
            ratings = _read_csv(archive, ratings_member, RATINGS_SCHEMA)
            movies_member = _find_member(archive, "movies.csv")
            if movies_member is None:
                log.warning("%s contains no movies.csv: titles will be empty", path)
                movies = pl.DataFrame(schema={"movieId": pl.Int64, "title": pl.Utf8, "genres": pl.Utf8})
            else:
                movies = _read_csv(archive, movies_member, MOVIES_SCHEMA)
            movies = movies.unique("movieId", keep="first")
            if "tags" in content_members:
                tags = _read_csv(archive, content_members["tags"], TAGS_SCHEMA, nullable=("tag",))
                movies = movies.join(tags_by_movie(tags), on="movieId", how="left")
            if "genome" in content_members:
                genome = _read_genome(archive, content_members["genome"])
                movies = movies.join(genome, on="movieId", how="left")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise DataError(f"{path} is a damaged zip file ({exc})") from None
    if ratings.height == 0:
        raise DataError(f"{path}: {ratings_member} has no rows")
    return MovieLensTables(ratings=ratings, movies=movies)


def read_movies_csv(path: Path) -> pl.DataFrame:
    """A movies.csv file (movieId, title, genres) as it is, duplicates kept: rows to check."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    with path.open(encoding="utf-8", errors="replace") as stream:
        columns = _header_columns(stream.readline())
    _require_columns(str(path), MOVIES_SCHEMA, columns)
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types=MOVIES_SCHEMA, include_columns=list(MOVIES_SCHEMA), strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: {_describe_arrow_error(str(exc), columns)}") from None
    return pl.from_arrow(table)


def _content_members(archive: zipfile.ZipFile, path: Path, features: Collection[str]) -> dict[str, str]:
    """The member of each requested content feature, checked before anything is read."""
    members = {}
    for feature, filename in MOVIE_CONTENT_FILES.items():
        if feature not in features:
            continue
        member = _find_member(archive, filename)
        if member is None:
            raise DataError(
                f"model.item_features: {feature} needs {filename}, which {path.name} does not have"
            )
        members[feature] = member
    return members


def _find_member(archive: zipfile.ZipFile, filename: str) -> str | None:
    """The shallowest member called ``filename`` (macOS zips add ``__MACOSX/`` copies)."""
    candidates = [
        name
        for name in archive.namelist()
        if name.rsplit("/", 1)[-1] == filename and not name.startswith("__MACOSX/")
    ]
    return min(candidates, key=lambda name: (name.count("/"), name)) if candidates else None


def _read_csv(
    archive: zipfile.ZipFile,
    member: str,
    schema: dict[str, pa.DataType],
    nullable: tuple[str, ...] = ("genres",),
) -> pl.DataFrame:
    columns = _checked_header(archive, member, schema)
    try:
        # Streaming from the zip lets pyarrow parse one block while the next is inflated.
        with archive.open(member) as stream:
            table = pacsv.read_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
                convert_options=pacsv.ConvertOptions(
                    column_types=schema, include_columns=list(schema), strings_can_be_null=False
                ),
            )
    except pa.ArrowInvalid as exc:
        raise DataError(f"{member}: {_describe_arrow_error(str(exc), columns)}") from None
    for name in schema:
        nulls = table.column(name).null_count
        if nulls and name not in nullable:
            raise DataError(f"{member}: column {name} has {nulls} empty value(s)")
    return pl.from_arrow(table)


def _read_genome(archive: zipfile.ZipFile, member: str) -> pl.DataFrame:
    """genome-scores.csv streamed block by block (ML-20M's is 11.7M rows; never one table)."""
    columns = _checked_header(archive, member, GENOME_SCHEMA)
    try:
        with archive.open(member) as stream:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=_GENOME_BLOCK_BYTES),
                convert_options=pacsv.ConvertOptions(
                    column_types=GENOME_SCHEMA, include_columns=list(GENOME_SCHEMA)
                ),
            )
            return genome_by_movie(reader, member)
    except pa.ArrowInvalid as exc:
        raise DataError(f"{member}: {_describe_arrow_error(str(exc), columns)}") from None


def _checked_header(archive: zipfile.ZipFile, member: str, schema: dict[str, pa.DataType]) -> list[str]:
    with archive.open(member) as stream:
        columns = _header_columns(stream.readline().decode("utf-8", errors="replace"))
    _require_columns(member, schema, columns)
    return columns


def _header_columns(line: str) -> list[str]:
    """A CSV header line's column names (a byte-order mark and quotes dropped)."""
    line = line.strip().lstrip("\ufeff")
    return [name.strip().strip('"') for name in line.split(",")] if line else []


def _require_columns(source: str, schema: dict[str, pa.DataType], columns: list[str]) -> None:
    missing = [name for name in schema if name not in columns]
    if missing:
        raise DataError(
            f"{source} is missing column(s) {', '.join(missing)} (found: {', '.join(columns) or 'nothing'})"
        )


def _describe_arrow_error(message: str, columns: list[str]) -> str:
    """Replace pyarrow's 'column #2' with the column's name."""
    first_line = message.strip().splitlines()[0]
    marker = "In CSV column #"
    if marker in first_line:
        index_text = first_line.split(marker, 1)[1].split(":", 1)[0]
        if index_text.isdigit() and int(index_text) < len(columns):
            name = columns[int(index_text)]
            first_line = first_line.replace(f"{marker}{index_text}", f"column {name}")
    return first_line.replace("CSV conversion error to", "cannot read as")
