"""The zip: same spec, same bytes; grouplens' layout holding exactly the spec's shape; the spec
member read back; nothing half-written."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from two_tower_recsys.data.movielens import MovieLensTables, read_movielens_zip
from two_tower_recsys.data.synthetic import FORMAT_VERSION, ratings, read_synthetic_spec, writer
from two_tower_recsys.errors import DataError
from two_tower_recsys.settings import SyntheticSpec

DEFAULT = SyntheticSpec()
TINY = SyntheticSpec(users=120, movies=90, ratings=3_000, seed=7, clusters=4)


def write(path: Path, spec: SyntheticSpec) -> Path:
    writer.write_synthetic_zip(path, spec, name="synthetic", progress=False)
    return path


def assert_exact_shape(tables: MovieLensTables, spec: SyntheticSpec) -> None:
    ratings = tables.ratings
    assert ratings.height == spec.ratings
    per_user = np.bincount(ratings["userId"].to_numpy(), minlength=spec.users + 1)[1:]
    assert per_user.min() >= 1  # ids 1..users, all present
    assert ratings["userId"].max() == spec.users
    assert ratings["movieId"].min() >= 1 and ratings["movieId"].max() <= spec.movies
    rows = ratings.select("userId", "movieId").to_numpy()
    assert (np.diff(rows[:, 0] * (spec.movies + 1) + rows[:, 1]) > 0).all()  # grouplens order, distinct
    assert sorted(tables.movies["movieId"].to_list()) == list(range(1, spec.movies + 1))


# --- determinism and format ---------------------------------------------------------------------


def test_same_spec_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    first = write(tmp_path / "a.zip", TINY).read_bytes()
    assert write(tmp_path / "b.zip", TINY).read_bytes() == first
    other_seed = SyntheticSpec(**{**TINY.__dict__, "seed": TINY.seed + 1})
    assert write(tmp_path / "c.zip", other_seed).read_bytes() != first


def test_zip_has_the_grouplens_layout(default_zip):
    with zipfile.ZipFile(default_zip) as archive:
        assert archive.namelist() == [
            "synthetic/ratings.csv",
            "synthetic/movies.csv",
            "synthetic/generator.json",
        ]
        rows = archive.read("synthetic/ratings.csv").decode().splitlines()
        movies = archive.read("synthetic/movies.csv").decode().splitlines()
    assert rows[0] == "userId,movieId,rating,timestamp"
    assert all(re.fullmatch(r"\d+,\d+,[0-5]\.[05],\d{9,10}", line) for line in rows[1:1000])
    assert movies[0] == "movieId,title,genres"
    with_comma = [line for line in movies[1:] if ", The (" in line]
    assert with_comma and all(re.fullmatch(r'\d+,"[^"]+, The \(\d{4}\)",[\w|-]+', x) for x in with_comma)


def test_exact_counts_and_ids(default_tables):
    assert_exact_shape(default_tables, DEFAULT)


@pytest.mark.parametrize(
    "spec",
    [
        SyntheticSpec(users=5, movies=4, ratings=20, clusters=2),  # every user rates every movie
        SyntheticSpec(users=40, movies=1, ratings=40, clusters=1),
        SyntheticSpec(users=30, movies=50, ratings=30, clusters=1),  # one rating each
        SyntheticSpec(users=200, movies=60, ratings=9_000, clusters=60),  # dense, one movie a cluster
    ],
    ids=["full-matrix", "one-movie", "one-rating-each", "dense"],
)
def test_edge_shapes_are_exact(tmp_path, spec):
    assert_exact_shape(read_movielens_zip(write(tmp_path / "edge.zip", spec)), spec)


def test_chunks_join_into_one_exact_dataset(tmp_path, monkeypatch):
    spec = SyntheticSpec(users=1_000, movies=700, ratings=140_000, clusters=8)
    one_chunk = write(tmp_path / "one.zip", spec).read_bytes()
    monkeypatch.setattr(ratings, "CHUNK_RATINGS", 7_000)  # ~20 chunks instead of one
    chunked = write(tmp_path / "chunked.zip", spec)
    assert_exact_shape(read_movielens_zip(chunked), spec)
    assert chunked.read_bytes() != one_chunk  # each chunk has its own random stream


# --- the spec member ----------------------------------------------------------------------------


def test_spec_round_trips_through_the_zip(default_zip, tmp_path, movielens_zip):
    assert read_synthetic_spec(default_zip) == DEFAULT
    assert read_synthetic_spec(movielens_zip([(1, 10, 4.0, 100)])) is None
    (tmp_path / "not.zip").write_text("userId\n")
    assert read_synthetic_spec(tmp_path / "not.zip") is None
    assert read_synthetic_spec(tmp_path / "missing.zip") is None


def test_a_zip_from_another_generator_version_has_no_spec(tmp_path):
    path = tmp_path / "old.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("old/generator.json", '{"format_version": 0, "spec": {}}')
    assert read_synthetic_spec(path) is None  # so callers regenerate it


def test_an_unreadable_spec_is_a_data_error(tmp_path):
    path = tmp_path / "odd.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "odd/generator.json", f'{{"format_version": {FORMAT_VERSION}, "spec": {{"users": "many"}}}}'
        )
    with pytest.raises(
        DataError, match="spec.users: Value .many. of type .str. could not be converted to Integer"
    ):
        read_synthetic_spec(path)


# --- crash safety -------------------------------------------------------------------------------


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = write(tmp_path / "synthetic.zip", TINY)
    before = path.read_bytes()

    def fail_after_some_bytes(table, handle):
        handle.write(b"1,1,4.0,1000000000\n")
        raise OSError("disk full")

    monkeypatch.setattr(writer, "_write_ratings_table", fail_after_some_bytes)
    with pytest.raises(OSError, match="disk full"):
        write(path, DEFAULT)
    assert path.read_bytes() == before  # the previous complete zip is untouched
    with pytest.raises(OSError, match="disk full"):
        write(tmp_path / "fresh.zip", DEFAULT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic.zip"]  # no temp files left
