"""The rating rows: MovieLens-like stars and times, and the signal a collaborative model can learn."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from two_tower_recsys.data.movielens import MovieLensTables, read_movielens_zip
from two_tower_recsys.data.synthetic import write_synthetic_zip
from two_tower_recsys.data.synthetic.audience import FIRST_TIMESTAMP, LAST_TIMESTAMP
from two_tower_recsys.settings import SyntheticSpec

STAR_TEXT = {f"{steps / 2:.1f}" for steps in range(1, 11)}


def test_ratings_look_like_movielens(default_tables):
    stars = default_tables.ratings["rating"].to_numpy()
    assert {f"{value:.1f}" for value in np.unique(stars)} == STAR_TEXT
    assert 3.3 < stars.mean() < 3.7
    assert 0.4 < (stars >= 4).mean() < 0.55
    assert 0.1 < (stars % 1 != 0).mean() < 0.35  # half stars, from the users who use them
    timestamps = default_tables.ratings["timestamp"]
    assert timestamps.min() >= FIRST_TIMESTAMP and timestamps.max() <= LAST_TIMESTAMP


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
    path = tmp_path_factory.mktemp("signal") / "signal.zip"
    write_synthetic_zip(path, spec, name="signal", progress=False)
    tables = read_movielens_zip(path)
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
