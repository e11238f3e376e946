"""recommend-all's file holds, for every user, exactly what the core answers one user at a time."""

import polars as pl
import pytest
import torch
from answers import assert_same_recommendations

from two_tower_recsys.errors import ConfigError
from two_tower_recsys.inference.batch import write_all_recommendations
from two_tower_recsys.inference.recommender import Recommender


def as_rows(answers):
    return [
        (answer.user_id, rank, movie_id, score)
        for answer in answers
        for rank, (movie_id, score, _) in enumerate(answer.recommendations, start=1)
    ]


@pytest.mark.parametrize(
    ("index", "exclude", "k"),
    [("exact", "rated", 50), ("hnsw", "positives", 7), ("pq", "rated", 12), ("exact", "none", 300)],
)
def test_every_user_gets_the_cores_answer(random_index_dir, tmp_path, index, exclude, k):
    recommender = Recommender.from_artifacts(random_index_dir, batch_size=32, index=index)  # 7 batches
    summary = write_all_recommendations(
        recommender, tmp_path / "all.parquet", k, exclude=exclude, progress=False
    )
    table = pl.read_parquet(tmp_path / "all.parquet")
    assert table.columns == ["user_id", "rank", "movieId", "score"]
    assert summary.users == 200 and summary.rows == table.height
    expected = as_rows(recommender.recommend(list(range(1, 201)), k, exclude=exclude))
    got = table.rows()
    assert [row[:2] for row in got] == [row[:2] for row in expected]  # users in order, ranks 1..k
    for user in range(1, 201):  # float32 in the file; batch shapes may move the last bits
        assert_same_recommendations(
            [row[2:] for row in got if row[0] == user], [row[2:] for row in expected if row[0] == user], user
        )


def test_a_user_who_rated_almost_everything_gets_fewer_rows(known_index_dir, tmp_path):
    recommender = Recommender.from_artifacts(known_index_dir)
    write_all_recommendations(recommender, tmp_path / "all.parquet", 3, progress=False)
    rows = pl.read_parquet(tmp_path / "all.parquet").filter(pl.col("user_id") == 11).rows()
    assert rows == [(11, 1, 60, 4.0)]  # userId 11 rated 5 of the 6 movies


def test_a_failed_run_leaves_the_previous_file(known_index_dir, tmp_path, monkeypatch):
    recommender = Recommender.from_artifacts(known_index_dir)
    path = tmp_path / "all.parquet"
    write_all_recommendations(recommender, path, 2, progress=False)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(recommender, "top_items", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_all_recommendations(recommender, path, 5, progress=False)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["all.parquet"]  # no temporary file left
    with pytest.raises(ConfigError, match="k must be positive"):
        write_all_recommendations(recommender, path, 0, progress=False)


def test_batches_scored_in_worker_threads_are_written_in_order(random_index_dir, tmp_path):
    recommender = Recommender.from_artifacts(random_index_dir, batch_size=16)  # 13 batches
    threads = torch.get_num_threads()
    tables = []
    for workers in (1, 3):
        path = tmp_path / f"workers{workers}.parquet"
        write_all_recommendations(recommender, path, 10, progress=False, workers=workers)
        tables.append(pl.read_parquet(path))
        assert torch.get_num_threads() == threads  # restored after the run
    assert tables[0].height == 2000
    one, three = (table.rows() for table in tables)
    assert [row[:2] for row in one] == [row[:2] for row in three]  # users in order, ranks 1..k
    for user in range(1, 201):  # another thread count may sum a product in another order
        assert_same_recommendations(
            [row[2:] for row in one if row[0] == user], [row[2:] for row in three if row[0] == user], user
        )
    assert tables[1].get_column("user_id").is_sorted()
