import zipfile

import pytest

from two_tower_recsys.data.movielens import read_movielens_zip
from two_tower_recsys.errors import DataError

ROWS = [(1, 10, 4.0, 100), (1, 20, 3.5, 200), (2, 10, 5.0, 300)]


def test_reads_typed_tables_from_any_folder(movielens_zip):
    path = movielens_zip(
        ROWS,
        movies=[(10, "Heat, The (1995)", "Action|Crime"), (20, "Up (2009)", "Animation")],
        folder="ml-odd-name",
    )
    tables = read_movielens_zip(path)
    assert tables.ratings.rows() == [(1, 10, 4.0, 100), (1, 20, 3.5, 200), (2, 10, 5.0, 300)]
    assert tables.ratings.columns == ["userId", "movieId", "rating", "timestamp"]
    assert tables.movies.filter(tables.movies["movieId"] == 10)["title"].item() == "Heat, The (1995)"


def test_not_a_zip(tmp_path):
    path = tmp_path / "ratings.zip"
    path.write_text("userId,movieId\n")
    with pytest.raises(DataError, match="is not a zip file"):
        read_movielens_zip(path)


def test_zip_without_ratings(tmp_path):
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml/movies.csv", "movieId,title,genres\n")
    with pytest.raises(DataError, match="contains no ratings.csv"):
        read_movielens_zip(path)


def test_missing_columns_are_named(movielens_zip):
    path = movielens_zip([(1, 10, 4.0)], ratings_header="userId,movieId,rating")
    with pytest.raises(DataError, match="missing column\\(s\\) timestamp"):
        read_movielens_zip(path)


def test_non_numeric_value_names_the_column(movielens_zip):
    path = movielens_zip([(1, 10, "great", 5)])
    with pytest.raises(DataError, match="column rating") as info:
        read_movielens_zip(path)
    assert "great" in str(info.value) and "\n" not in str(info.value)


def test_no_rows(movielens_zip):
    with pytest.raises(DataError, match="has no rows"):
        read_movielens_zip(movielens_zip([]))


def test_empty_values_are_rejected(movielens_zip):
    with pytest.raises(DataError, match="column timestamp has 1 empty value"):
        read_movielens_zip(movielens_zip([(1, 10, 4.0, "")]))


def test_missing_movies_csv_gives_empty_titles(tmp_path):
    path = tmp_path / "r.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x/ratings.csv", "userId,movieId,rating,timestamp\n1,2,4.0,3\n")
    assert read_movielens_zip(path).movies.height == 0


def test_real_small_dataset(small_movielens_zip):
    tables = read_movielens_zip(small_movielens_zip)
    assert tables.ratings.height == 100_836
    assert tables.movies.height == 9_742
