"""Shared fixtures: tiny MovieLens-format zips written on the fly, the real small dataset if present."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pytest

SHARED_SMALL_ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small.zip"

Rating = tuple[int, int, float, int]  # userId, movieId, rating, timestamp


def write_movielens_zip(
    path: Path,
    ratings: Iterable[Rating],
    movies: Iterable[tuple[int, str, str]] | None = None,
    folder: str = "ml-test",
    ratings_header: str = "userId,movieId,rating,timestamp",
) -> Path:
    """Write a MovieLens-format zip; movies default to 'Movie <id> (2000)' for every rated id."""
    ratings = list(ratings)
    if movies is None:
        ids = sorted({row[1] for row in ratings})
        movies = [(movie_id, f"Movie {movie_id} (2000)", "Drama") for movie_id in ids]
    ratings_csv = ratings_header + "\n" + "".join(",".join(map(str, row)) + "\n" for row in ratings)
    movies_csv = "movieId,title,genres\n" + "".join(
        f'{movie_id},"{title}",{genres}\n' for movie_id, title, genres in movies
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{folder}/ratings.csv", ratings_csv)
        archive.writestr(f"{folder}/movies.csv", movies_csv)
    return path


@pytest.fixture
def movielens_zip(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``movielens_zip(ratings, movies=None, name='ratings.zip', ...)`` -> path of the zip."""

    def make(ratings: Sequence[Rating], movies=None, name: str = "ratings.zip", **kwargs) -> Path:
        return write_movielens_zip(tmp_path / name, ratings, movies, **kwargs)

    return make


@pytest.fixture
def small_movielens_zip() -> Path:
    """The real ml-latest-small.zip from ../shared/data; skipped where it is absent."""
    if not SHARED_SMALL_ZIP.exists():
        pytest.skip(f"real MovieLens data not available: {SHARED_SMALL_ZIP} is absent")
    return SHARED_SMALL_ZIP
