import polars as pl
import pytest
from support import write_movielens_zip

from two_tower_recsys.errors import DataError
from two_tower_recsys.preprocessing import prepare as prepare_module
from two_tower_recsys.preprocessing.prepare import prepare_dataset
from two_tower_recsys.preprocessing.processed import load_processed, processed_fingerprint
from two_tower_recsys.settings import DataConfig, PathsConfig

ROWS = [(u, m, 4.5, t) for u in range(1, 7) for t, m in enumerate(range(100, 108))]


@pytest.fixture
def paths(tmp_path):
    zip_path = write_movielens_zip(tmp_path / "raw.zip", ROWS)
    return PathsConfig(raw_zip=zip_path, processed_dir=tmp_path / "processed")


def data(**overrides):
    return DataConfig(name="custom", min_user_interactions=1, min_item_interactions=1, **overrides)


def count_builds(monkeypatch):
    calls = []
    original = prepare_module.build_splits
    monkeypatch.setattr(prepare_module, "build_splits", lambda *a: calls.append(1) or original(*a))
    return calls


def test_processed_dataset_is_written_then_reused(paths, monkeypatch):
    builds = count_builds(monkeypatch)
    first = prepare_dataset(data(), paths, progress=False)
    second = prepare_dataset(data(), paths, progress=False)
    assert len(builds) == 1
    assert second.stats == first.stats
    assert second.train.equals(first.train)
    assert list(second.titles["title"]) == [f"Movie {m} (2000)" for m in range(100, 106)]
    files = {p.name for p in paths.processed_dir.iterdir()}
    assert {"train.parquet", "val.parquet", "test.parquet", "user2idx.json", "item2idx.json"} <= files
    assert {"titles.parquet", "stats.json", "manifest.json"} <= files


def test_changed_filters_or_input_rebuild(paths, monkeypatch):
    builds = count_builds(monkeypatch)
    prepare_dataset(data(), paths, progress=False)
    prepare_dataset(data(rating_threshold=4.5), paths, progress=False)
    assert len(builds) == 2
    write_movielens_zip(paths.raw_zip, [*ROWS, (9, 100, 5.0, 1)])
    rebuilt = prepare_dataset(data(rating_threshold=4.5), paths, progress=False)
    assert len(builds) == 3 and rebuilt.n_users == 7


def test_a_damaged_processed_file_is_rebuilt_not_trusted(paths, monkeypatch):
    builds = count_builds(monkeypatch)
    prepare_dataset(data(), paths, progress=False)
    (paths.processed_dir / "train.parquet").write_bytes(b"garbage")
    with pytest.raises(DataError, match="train.parquet"):
        load_processed(paths.processed_dir)
    prepare_dataset(data(), paths, progress=False)
    assert len(builds) == 2
    assert load_processed(paths.processed_dir).train.height > 0


def test_a_crash_while_writing_leaves_no_dataset_that_a_later_step_trusts(paths, monkeypatch):
    prepare_dataset(data(), paths, progress=False)
    assert processed_fingerprint(paths.processed_dir) is not None
    calls = []

    def write_then_crash(self, path, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return original(self, path, **kwargs)

    original = pl.DataFrame.write_parquet
    monkeypatch.setattr(pl.DataFrame, "write_parquet", write_then_crash)
    with pytest.raises(OSError, match="disk full"):
        prepare_dataset(data(rating_threshold=4.5), paths, progress=False)
    # the previous complete dataset is still there, still verified, and nothing half-written leaked
    assert load_processed(paths.processed_dir).stats["rating_threshold"] == 4.0
    assert not [p for p in paths.processed_dir.parent.iterdir() if "staging" in p.name]


def test_reading_tags_changes_the_cache_key_and_a_cache_with_more_content_serves_less(paths, monkeypatch):
    import zipfile

    with zipfile.ZipFile(paths.raw_zip, "a") as archive:
        archive.writestr("ml-test/tags.csv", "userId,movieId,tag,timestamp\n1,100,Heist,5\n")
    builds = count_builds(monkeypatch)
    plain = prepare_dataset(data(), paths, progress=False)  # an id model: tags are not read
    assert "tags" not in plain.titles.columns
    tagged = prepare_dataset(data(), paths, item_features=("id", "tags"), progress=False)
    assert len(builds) == 2  # the cache without tags could not serve a model that reads them
    assert tagged.titles.filter(pl.col("movieId") == 100)["tags"].to_list() == [["heist"]]
    assert tagged.titles.filter(pl.col("movieId") == 101)["tags"].to_list() == [[]]  # none: empty
    assert processed_fingerprint(paths.processed_dir)["movie_content"] == ["tags"]
    again = prepare_dataset(data(), paths, progress=False)  # reused: it has tags and more
    assert len(builds) == 2 and "tags" in again.titles.columns
    assert load_processed(paths.processed_dir).titles.equals(tagged.titles)
