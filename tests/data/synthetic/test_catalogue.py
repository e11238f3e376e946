"""The movies: heavy-tailed popularity, titles and genres, and the table draws are made from."""

from __future__ import annotations

import numpy as np

from two_tower_recsys.data.synthetic.catalogue import GENRES, make_catalogue
from two_tower_recsys.settings import SyntheticSpec


def test_movie_popularity_is_heavy_tailed(default_tables):
    spec = SyntheticSpec()
    per_movie = np.bincount(default_tables.ratings["movieId"].to_numpy(), minlength=spec.movies + 1)[1:]
    per_movie = np.sort(per_movie)[::-1]
    top_tenth = per_movie[: spec.movies // 10].sum() / per_movie.sum()
    assert top_tenth > 0.4
    assert per_movie[0] > 10 * np.median(per_movie)
    assert per_movie[-1] < np.median(per_movie) / 5  # some movies are rarely rated
    assert per_movie[0] < 0.6 * spec.users  # but no movie is rated by everyone


def test_movies_have_titles_and_genres(default_tables):
    movies = default_tables.movies
    assert movies["title"].str.contains(r"^\S.* \((19|20)\d\d\)$").all()
    assert movies["title"].n_unique() > 0.8 * movies.height
    genres = set(movies["genres"].str.split("|").explode().to_list())
    assert genres <= set(GENRES) and len(genres) > 10


def test_a_draw_from_a_cluster_segment_is_a_movie_of_that_cluster():
    spec = SyntheticSpec(users=300, movies=400, ratings=12_000, clusters=6)
    catalogue = make_catalogue(spec, np.random.default_rng(0))
    assert (np.diff(catalogue.choice_cdf) >= 0).all()
    rng = np.random.default_rng(1)
    segment = np.repeat(np.arange(spec.clusters + 1), 5_000)  # segment C is global popularity
    position = np.searchsorted(catalogue.choice_cdf, segment + rng.random(len(segment)), side="right")
    drawn = catalogue.choice_movie[position]
    from_cluster = segment < spec.clusters
    assert (catalogue.cluster[drawn[from_cluster]] == segment[from_cluster]).all()
    global_draws = np.bincount(drawn[~from_cluster], minlength=spec.movies) / (~from_cluster).sum()
    top = np.argsort(-catalogue.popularity)[:5]
    np.testing.assert_allclose(global_draws[top], catalogue.popularity[top], atol=0.02)
