"""The synthetic MovieLens-format generator: exact shape, realistic structure, learnable signal."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from two_tower_recsys.data import synthetic
from two_tower_recsys.data.movielens import MovieLensTables, read_movielens_zip
from two_tower_recsys.data.synthetic import read_synthetic_spec, write_synthetic_zip
from two_tower_recsys.errors import ConfigError, DataError
from two_tower_recsys.pipelines.hydra_edge import compose_settings
from two_tower_recsys.pipelines.synth_pipeline import run
from two_tower_recsys.settings import SyntheticSpec

DEFAULT = SyntheticSpec()  # the shape of configs/data/synthetic.yaml: the README's main job
TINY = SyntheticSpec(users=120, movies=90, ratings=3_000, seed=7, clusters=4)
STAR_TEXT = {f"{steps / 2:.1f}" for steps in range(1, 11)}


def write(path: Path, spec: SyntheticSpec, name: str = "synthetic") -> Path:
    write_synthetic_zip(path, spec, name=name, progress=False)
    return path


@pytest.fixture(scope="module")
def default_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("synthetic") / "synthetic.zip", DEFAULT)


@pytest.fixture(scope="module")
def default_tables(default_zip: Path) -> MovieLensTables:
    return read_movielens_zip(default_zip)


def ratings_per(tables: MovieLensTables, column: str, size: int) -> np.ndarray:
    return np.bincount(tables.ratings[column].to_numpy(), minlength=size + 1)[1:]


def assert_exact_shape(tables: MovieLensTables, spec: SyntheticSpec) -> None:
    ratings = tables.ratings
    assert ratings.height == spec.ratings
    assert ratings_per(tables, "userId", spec.users).min() >= 1  # ids 1..users, all present
    assert ratings["userId"].max() == spec.users
    assert ratings["movieId"].min() >= 1 and ratings["movieId"].max() <= spec.movies
    assert ratings.select("userId", "movieId").is_duplicated().sum() == 0
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
        ratings = archive.read("synthetic/ratings.csv").decode().splitlines()
        movies = archive.read("synthetic/movies.csv").decode().splitlines()
    assert ratings[0] == "userId,movieId,rating,timestamp"
    assert all(re.fullmatch(r"\d+,\d+,[0-5]\.[05],\d{9,10}", line) for line in ratings[1:1000])
    assert movies[0] == "movieId,title,genres"
    with_comma = [line for line in movies[1:] if ", The (" in line]
    assert with_comma and all(re.fullmatch(r'\d+,"[^"]+, The \(\d{4}\)",[\w|-]+', x) for x in with_comma)


def test_exact_counts_ids_and_values(default_tables):
    assert_exact_shape(default_tables, DEFAULT)
    ratings = default_tables.ratings
    assert {f"{value:.1f}" for value in ratings["rating"].unique().to_list()} == STAR_TEXT
    timestamps = ratings["timestamp"]
    assert timestamps.min() >= synthetic.FIRST_TIMESTAMP and timestamps.max() <= synthetic.LAST_TIMESTAMP
    rows = ratings.select("userId", "movieId").to_numpy()
    assert (np.diff(rows[:, 0] * (DEFAULT.movies + 1) + rows[:, 1]) > 0).all()  # grouplens order


def test_movies_have_titles_and_genres(default_tables):
    movies = default_tables.movies
    assert movies["title"].str.contains(r"^\S.* \((19|20)\d\d\)$").all()
    assert movies["title"].n_unique() > 0.8 * movies.height
    genres = set(movies["genres"].str.split("|").explode().to_list())
    assert genres <= set(synthetic.GENRES) and len(genres) > 10


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
    monkeypatch.setattr(synthetic, "CHUNK_RATINGS", 7_000)  # ~20 chunks instead of one
    spec = SyntheticSpec(users=1_000, movies=700, ratings=140_000, clusters=8)
    assert_exact_shape(read_movielens_zip(write(tmp_path / "chunked.zip", spec)), spec)


# --- realistic structure ------------------------------------------------------------------------


def test_movie_popularity_is_heavy_tailed(default_tables):
    per_movie = np.sort(ratings_per(default_tables, "movieId", DEFAULT.movies))[::-1]
    top_tenth = per_movie[: DEFAULT.movies // 10].sum() / per_movie.sum()
    assert top_tenth > 0.4
    assert per_movie[0] > 10 * np.median(per_movie)
    assert per_movie[-1] < np.median(per_movie) / 5  # some movies are rarely rated
    assert per_movie[0] < 0.6 * DEFAULT.users  # but no movie is rated by everyone


def test_user_activity_is_heavy_tailed(default_tables):
    per_user = ratings_per(default_tables, "userId", DEFAULT.users)
    assert per_user.min() == synthetic.ACTIVITY_FLOOR  # most users survive a 5-positive filter
    assert per_user.mean() > 1.3 * np.median(per_user)
    assert per_user.max() > 8 * np.median(per_user)


def test_ratings_look_like_movielens(default_tables):
    stars = default_tables.ratings["rating"].to_numpy()
    assert 3.3 < stars.mean() < 3.7
    assert 0.4 < (stars >= 4).mean() < 0.55
    assert 0.1 < (stars % 1 != 0).mean() < 0.35  # half stars, from the users who use them


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
        version = synthetic.FORMAT_VERSION
        archive.writestr(
            "odd/generator.json", f'{{"format_version": {version}, "spec": {{"users": "many"}}}}'
        )
    with pytest.raises(DataError, match="users must be an integer"):
        read_synthetic_spec(path)


# --- crash safety and configuration -------------------------------------------------------------


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = write(tmp_path / "synthetic.zip", TINY)
    before = path.read_bytes()

    def fail_after_some_bytes(table, handle):
        handle.write(b"1,1,4.0,1000000000\n")
        raise OSError("disk full")

    monkeypatch.setattr(synthetic, "_write_ratings_table", fail_after_some_bytes)
    with pytest.raises(OSError, match="disk full"):
        write(path, DEFAULT)
    assert path.read_bytes() == before  # the previous complete zip is untouched
    with pytest.raises(OSError, match="disk full"):
        write(tmp_path / "fresh.zip", DEFAULT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic.zip"]  # no temp files left


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"users": 0}, "data.synthetic.users must be positive"),
        ({"movies": -3}, "data.synthetic.movies must be positive"),
        ({"clusters": 0}, "data.synthetic.clusters must be positive"),
        ({"ratings": 10}, "data.synthetic.ratings must be at least data.synthetic.users"),
        ({"users": 3, "movies": 2, "ratings": 7}, "data.synthetic.ratings must be at most"),
        ({"movies": 10, "clusters": 11, "ratings": 5_000}, "data.synthetic.clusters must be at most"),
        ({"seed": -1}, "data.synthetic.seed must be non-negative"),
    ],
)
def test_invalid_spec_is_a_config_error(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        SyntheticSpec(**{**DEFAULT.__dict__, **overrides})


def test_synth_needs_a_synthetic_dataset():
    with pytest.raises(ConfigError, match="use data=synthetic or data=synthetic-20m"):
        run(compose_settings(["data=ml-20m"]))


def test_synthetic_configs_compose():
    assert compose_settings(["data=synthetic"]).data.synthetic == DEFAULT
    big = compose_settings(["data=synthetic-20m"]).data.synthetic
    assert (big.users, big.movies, big.ratings, big.clusters) == (138_493, 27_278, 20_000_263, 64)


def two_tower(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "two_tower_recsys.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_writes_the_zip(tmp_path):
    path = tmp_path / "raw" / "small.zip"
    sizes = ["data.synthetic.users=50", "data.synthetic.movies=60", "data.synthetic.ratings=900"]
    result = two_tower("synth", "data=synthetic", *sizes, f"paths.raw_zip={path}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_synthetic_spec(path) == SyntheticSpec(users=50, movies=60, ratings=900)
    assert read_movielens_zip(path).ratings.height == 900


def test_cli_reports_an_invalid_size_in_one_line(tmp_path):
    path = tmp_path / "bad.zip"
    result = two_tower(
        "synth", "data=synthetic", "data.synthetic.ratings=10", f"paths.raw_zip={path}", cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: data.synthetic.ratings must be at least data.synthetic.users "
        "(2000: every user rates a movie), got 10"
    ]
    assert not path.exists()


# --- learnable signal ---------------------------------------------------------------------------


class HeldOutNewest:
    """Positives (rating >= 4) of the users with at least two; each one's newest is held out.

    ``train`` is the users x movies matrix of the other positives, one row per such user.
    """

    def __init__(self, tables: MovieLensTables, users: int, movies: int) -> None:
        positives = tables.ratings.filter(pl.col("rating") >= 4).sort("userId", "timestamp", "movieId")
        self.user = positives["userId"].to_numpy() - 1
        self.movie = positives["movieId"].to_numpy() - 1
        start = np.searchsorted(self.user, np.arange(users))
        count = np.searchsorted(self.user, np.arange(users), side="right") - start
        kept = np.flatnonzero(count >= 2)
        self.row = np.full(users, -1)  # row of each kept user in train
        self.row[kept] = np.arange(len(kept))
        # 0 for each user's oldest positive, counting up to the held-out newest one.
        self.position = np.arange(len(self.user)) - start[self.user]
        self.newest_train = count[self.user] - 2  # position of the newest training positive
        self.is_train = (self.row[self.user] >= 0) & (self.position <= self.newest_train)
        self.held_out = self.movie[start[kept] + count[kept] - 1]
        self.movies = movies
        self.train = self.history(np.ones(len(self.user), dtype=bool))

    def history(self, selected: np.ndarray) -> np.ndarray:
        """Users x movies matrix of the ``selected`` training positives."""
        matrix = np.zeros((len(self.held_out), self.movies))
        keep = self.is_train & selected
        matrix[self.row[self.user[keep]], self.movie[keep]] = 1.0
        return matrix

    def newest(self, length: int) -> np.ndarray:
        return self.history(self.newest_train - self.position < length)

    def oldest(self, length: int) -> np.ndarray:
        return self.history(self.position < length)

    def hit_rate(self, scores: np.ndarray, k: int, among: np.ndarray | None = None) -> float:
        """Share of users whose held-out movie is among the top ``k`` unseen movies by score."""
        scores = np.where(self.train > 0, -np.inf, np.broadcast_to(scores, self.train.shape))
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        hits = (top == self.held_out[:, None]).any(axis=1)
        return float(hits[among].mean() if among is not None else hits.mean())


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> HeldOutNewest:
    spec = SyntheticSpec(users=1_000, movies=800, ratings=60_000)
    tables = read_movielens_zip(write(tmp_path_factory.mktemp("signal") / "signal.zip", spec))
    return HeldOutNewest(tables, spec.users, spec.movies)


def item_similarity(train: np.ndarray) -> np.ndarray:
    """Cosine similarity of movies' co-occurrence among users' training positives (item-kNN)."""
    co_occurrence = train.T @ train
    np.fill_diagonal(co_occurrence, 0.0)
    popularity = train.sum(axis=0)
    return co_occurrence / np.sqrt(np.outer(popularity, popularity) + 1e-9)


def test_collaborative_beats_popularity_on_the_newest_positive(held_out):
    popularity = held_out.hit_rate(held_out.train.sum(axis=0), k=50)
    collaborative = held_out.hit_rate(held_out.train @ item_similarity(held_out.train), k=50)
    assert collaborative > 1.3 * popularity, (collaborative, popularity)  # ~0.61 vs ~0.35


def test_recent_history_predicts_the_newest_positive_better(held_out):
    """Taste drifts: a user's latest positives point to the next one better than the first ones."""
    similarity = item_similarity(held_out.train)
    enough = held_out.train.sum(axis=1) >= 10
    recent = held_out.hit_rate(held_out.newest(5) @ similarity, k=50, among=enough)
    oldest = held_out.hit_rate(held_out.oldest(5) @ similarity, k=50, among=enough)
    assert recent > 1.1 * oldest, (recent, oldest)  # ~0.58 vs ~0.46
