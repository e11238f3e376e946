"""Tags and the tag genome read from a MovieLens zip: one row per movie, hand-computed answers."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from two_tower_recsys.data.movie_content import GENOME_SCHEMA, genome_by_movie, tags_by_movie
from two_tower_recsys.data.movielens import read_movielens_zip
from two_tower_recsys.errors import DataError

RATINGS = [(1, 10, 4.0, 100), (2, 20, 3.5, 200), (3, 30, 5.0, 300)]
MOVIES = [(10, "Heat (1995)", "Action"), (20, "Up (2009)", "Animation"), (30, "Alien (1979)", "Horror")]
TAGS_CSV = """userId,movieId,tag,timestamp
1,10,Pacino,1
2,10,pacino ,2
3,10,heist,3
3,10,pacino,4
1,20,Pixar,5
2,20,funny,6
3,20,pixar,7
1,20,"sad, then funny",8
2,20,  ,9
"""
GENOME_CSV = """movieId,tagId,relevance
20,2,0.75
10,1,0.5
10,2,0.25
20,1,1.0
"""


def with_files(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "a") as archive:
        for name, text in files.items():
            archive.writestr(f"ml-test/{name}", text)
    return path


def test_tags_are_normalised_and_each_movies_are_most_used_first(movielens_zip):
    path = with_files(movielens_zip(RATINGS, MOVIES), {"tags.csv": TAGS_CSV})
    movies = read_movielens_zip(path, movie_content=("tags",)).movies.sort("movieId")
    # 10: "pacino" by users 1, 2, 3 (user 3 twice, counted once), "heist" by user 3.
    # 20: "pixar" by 2 users; "funny" and "sad, then funny" by one each (by text); a blank tag is none.
    assert movies.get_column("tags").to_list() == [
        ["pacino", "heist"],
        ["pixar", "funny", "sad, then funny"],
        None,  # no tags at all: null here, an empty list in the processed dataset
    ]
    assert "genome" not in movies.columns


def test_the_genome_is_one_vector_per_movie_in_tag_id_order(movielens_zip):
    path = with_files(movielens_zip(RATINGS, MOVIES), {"genome-scores.csv": GENOME_CSV})
    movies = read_movielens_zip(path, movie_content=("genome",)).movies.sort("movieId")
    assert movies.schema["genome"] == pl.Array(pl.Float16, 2)
    assert movies.get_column("genome").to_list() == [[0.5, 0.25], [1.0, 0.75], None]


def test_the_genome_grows_across_batches_and_a_missing_pair_is_zero():
    def batch(movies, tags, relevance):
        return pa.RecordBatch.from_pydict(
            {"movieId": movies, "tagId": tags, "relevance": relevance}, schema=pa.schema(GENOME_SCHEMA)
        )

    # Tag 7 and movies 5 and 900 first appear in later batches; (900, 3) is never given.
    batches = [
        batch([2, 2], [3, 5], [0.5, 0.25]),
        batch([5, 2, 5], [5, 7, 3], [0.125, 1.0, 0.75]),
        batch([900, 5], [7, 7], [0.375, 0.0625]),
    ]
    genome = genome_by_movie(batches, "genome-scores.csv").sort("movieId")
    assert genome.get_column("movieId").to_list() == [2, 5, 900]
    expected = np.array([[0.5, 0.25, 1.0], [0.75, 0.125, 0.0625], [0.0, 0.0, 0.375]], dtype=np.float16)
    got = genome.get_column("genome").to_numpy()
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, expected)  # every value is exact in float16


@pytest.mark.parametrize(("feature", "filename"), [("tags", "tags.csv"), ("genome", "genome-scores.csv")])
def test_a_feature_whose_file_the_zip_lacks_is_one_line_naming_both(movielens_zip, feature, filename):
    path = movielens_zip(RATINGS, MOVIES, name="ml-plain.zip")
    with pytest.raises(DataError) as raised:
        read_movielens_zip(path, movie_content=("id", feature))
    assert str(raised.value) == (
        f"model.item_features: {feature} needs {filename}, which ml-plain.zip does not have"
    )


def test_a_genome_with_an_empty_relevance_is_an_error_naming_the_file(movielens_zip):
    path = with_files(
        movielens_zip(RATINGS, MOVIES), {"genome-scores.csv": "movieId,tagId,relevance\n10,1,\n"}
    )
    with pytest.raises(DataError, match="genome-scores.csv: column relevance has empty value"):
        read_movielens_zip(path, movie_content=("genome",))


def test_tags_by_movie_counts_distinct_users_not_rows():
    tags = pl.DataFrame({"userId": [1, 1, 1, 2], "movieId": [7, 7, 7, 7], "tag": ["a", "a", "a", "b"]})
    counted = tags_by_movie(tags.vstack(pl.DataFrame({"userId": [3], "movieId": [7], "tag": ["B"]})))
    assert counted.get_column("tags").to_list() == [["b", "a"]]  # b: users 2 and 3; a: user 1 only


def test_tags_are_read_from_ml_latest_small(small_movielens_zip):
    movies = read_movielens_zip(small_movielens_zip, movie_content=("tags",)).movies
    tagged = movies.filter(pl.col("tags").is_not_null())
    assert tagged.height == 1572  # ml-latest-small's tags.csv covers 1,572 movies
    toy_story = movies.filter(pl.col("movieId") == 1).get_column("tags").item().to_list()
    assert set(toy_story) == {"pixar", "fun"}
