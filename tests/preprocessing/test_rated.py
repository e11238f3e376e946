"""Every rating of an indexed user on an indexed movie is kept, positive or not, once per pair."""

import numpy as np
import polars as pl
from support import write_movielens_zip

from two_tower_recsys.preprocessing.prepare import prepare_dataset
from two_tower_recsys.preprocessing.processed import load_processed
from two_tower_recsys.preprocessing.rated import index_of, rated_pairs
from two_tower_recsys.settings import DataConfig, PathsConfig


def ratings(rows):
    return pl.DataFrame(rows, schema=["userId", "movieId", "rating", "timestamp"], orient="row")


def test_rated_pairs_keep_low_ratings_and_drop_unindexed_ids():
    table = ratings([(1, 10, 5.0, 1), (1, 30, 2.0, 2), (2, 10, 1.0, 3), (9, 10, 5.0, 4), (2, 99, 3.0, 5)])
    pairs = rated_pairs(table, user_ids=np.array([1, 2]), item_ids=np.array([10, 30]))
    assert pairs.rows() == [(0, 0), (0, 1), (1, 0)]  # user 9 and movie 99 are not indexed
    assert pairs.schema == {"user_idx": pl.Int32, "item_idx": pl.Int32}


def test_unsorted_repeated_ratings_count_once():
    table = ratings([(2, 30, 1.0, 1), (1, 30, 2.0, 2), (2, 30, 4.0, 3), (1, 10, 5.0, 4)])
    pairs = rated_pairs(table, user_ids=np.array([1, 2]), item_ids=np.array([10, 30]))
    assert pairs.rows() == [(0, 0), (0, 1), (1, 1)]


def test_index_of_large_or_negative_ids_uses_binary_search():
    ids = np.array([-5, 3, 10**15])
    assert index_of(np.array([10**15, 3, 4, -5]), ids).tolist() == [2, 1, -1, 0]


def test_prepare_keeps_the_rated_pairs_on_disk(tmp_path):
    # userId 1 rated movie 105 two stars: not a positive, but rated.
    rows = [(u, m, 4.5, t + 10) for u in range(1, 7) for t, m in enumerate(range(100, 105))]
    rows += [(1, 105, 2.0, 1), *[(u, 105, 5.0, 1) for u in range(2, 7)]]  # early: 105 is in train
    paths = PathsConfig(raw_zip=write_movielens_zip(tmp_path / "raw.zip", rows), processed_dir=tmp_path / "p")
    data = DataConfig(name="custom", min_user_interactions=1, min_item_interactions=1)
    dataset = prepare_dataset(data, paths, progress=False)
    positives = pl.concat([dataset.train, dataset.val, dataset.test]).select("user_idx", "item_idx")
    movie_105 = int(np.flatnonzero(dataset.item_ids == 105)[0])
    assert (0, movie_105) not in set(positives.rows())
    assert (0, movie_105) in set(dataset.rated.rows())
    assert set(positives.rows()) <= set(dataset.rated.rows())
    indexed = [row for row in rows if row[1] in set(dataset.item_ids.tolist())]  # 103, 104: held out only
    assert dataset.stats["rated_pairs"] == dataset.rated.height == len(indexed)
    assert load_processed(paths.processed_dir).rated.equals(dataset.rated)
