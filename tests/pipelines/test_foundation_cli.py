"""The foundation through the real command line: evaluate, bad input, overrides, module entry points."""

import json
import subprocess
import sys
import zipfile

import pytest
from support import VENV_BIN, run_cli, write_movielens_zip

pytestmark = pytest.mark.slow  # each case starts the real command line (a few seconds of imports)

GOOD_ROWS = [(u, m, 5.0, t) for u in range(1, 9) for t, m in enumerate(range(10, 20))]


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def evaluate_custom(tmp_path, zip_path, *extra):
    return run_cli(
        [
            "evaluate",
            "model=popularity",
            "data=custom",
            f"paths.raw_zip={zip_path}",
            "trainer.progress_bar=false",
            *extra,
        ],
        tmp_path,
    )


def test_evaluate_popularity_alone_writes_metrics_json(tmp_path):
    zip_path = write_movielens_zip(tmp_path / "r.zip", GOOD_ROWS)
    result = evaluate_custom(
        tmp_path, zip_path, "data.min_user_interactions=1", "data.min_item_interactions=1"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "artifacts/metrics.json").read_text())
    assert report["dataset"]["name"] == "custom" and report["dataset"]["users"] == 8
    assert set(report["val"]) == {"popularity"} and set(report["test"]) == {"popularity"}
    assert set(report["test"]["popularity"]) == {"recall@10", "recall@50", "recall@100", "ndcg@10", "ndcg@50"}
    assert set(report["intervals"]["test"]["popularity"]) == set(report["test"]["popularity"])
    assert "paired" not in report or not any(report["paired"].values())  # one model: nothing to pair
    stats = json.loads((tmp_path / "data/processed/stats.json").read_text())
    assert stats["input_md5"] and stats["train_rows"] == 8 * 8
    assert "popularity" in result.stdout


def broken_zips(tmp_path):
    not_a_zip = tmp_path / "not.zip"
    not_a_zip.write_text("hello")
    no_ratings = tmp_path / "no_ratings.zip"
    with zipfile.ZipFile(no_ratings, "w") as archive:
        archive.writestr("ml/movies.csv", "movieId,title,genres\n")
    return {
        "not a zip": (not_a_zip, ["is not a zip file"]),
        "no ratings.csv": (no_ratings, ["contains no ratings.csv"]),
        "missing column": (
            write_movielens_zip(tmp_path / "cols.zip", [(1, 2, 4.0)], ratings_header="userId,movieId,rating"),
            ["missing column(s) timestamp"],
        ),
        "non-numeric": (
            write_movielens_zip(tmp_path / "nan.zip", [(1, 2, "x", 3)]),
            ["column rating", "'x'"],
        ),
        "no rows": (write_movielens_zip(tmp_path / "empty.zip", []), ["has no rows"]),
    }


@pytest.mark.parametrize("case", ["not a zip", "no ratings.csv", "missing column", "non-numeric", "no rows"])
def test_bad_input_files_fail_in_one_line_and_write_nothing(tmp_path, case):
    zip_path, fragments = broken_zips(tmp_path)[case]
    result = evaluate_custom(tmp_path, zip_path)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "data/processed/manifest.json").exists()
    assert not (tmp_path / "artifacts/metrics.json").exists()


def test_thresholds_that_leave_no_users_fail_in_one_line(tmp_path):
    zip_path = write_movielens_zip(tmp_path / "r.zip", GOOD_ROWS)
    result = evaluate_custom(tmp_path, zip_path, "data.min_user_interactions=1000")
    assert_one_line_error(result, "no positives left after filtering", "data.min_user_interactions=1000")


def test_checksum_mismatch_of_a_named_dataset_fails_in_one_line(tmp_path):
    zip_path = write_movielens_zip(tmp_path / "ml-latest-small.zip", GOOD_ROWS)
    result = run_cli(
        ["evaluate", "model=popularity", "data=ml-latest-small", f"paths.raw_zip={zip_path}"], tmp_path
    )
    assert_one_line_error(result, "expected", "data.md5=")
    assert zip_path.exists()  # the user's own file is refused, never deleted


def test_unknown_override_key_is_an_error(tmp_path):
    result = run_cli(["evaluate", "model=popularity", "data.no_such_key=1"], tmp_path)
    assert_one_line_error(result, "data.no_such_key: Key 'no_such_key' not in 'DataConfig'")
    added = run_cli(["evaluate", "model=popularity", "+data.no_such_key=1"], tmp_path)
    assert_one_line_error(added, "data.no_such_key: Key 'no_such_key' not in 'DataConfig'")


def test_a_value_of_the_wrong_type_is_a_one_line_error(tmp_path):
    result = run_cli(["evaluate", "model=popularity", "trainer.batch_size=abc"], tmp_path)
    assert_one_line_error(
        result, "trainer.batch_size: Value 'abc' of type 'str' could not be converted to Integer"
    )
    assert list(tmp_path.iterdir()) == []


def test_unknown_command_and_help():
    unknown = subprocess.run([str(VENV_BIN / "two-tower"), "fly"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "unknown command 'fly'" in unknown.stderr
    usage = subprocess.run([str(VENV_BIN / "two-tower"), "--help"], capture_output=True, text=True)
    for command in ("train", "evaluate", "synth", "infer", "export-onnx", "package-mlflow"):
        assert command in usage.stdout


def test_module_entry_point_runs_the_same_pipeline(tmp_path):
    zip_path = write_movielens_zip(tmp_path / "r.zip", GOOD_ROWS)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "two_tower_recsys.pipelines.evaluate_pipeline",
            "model=popularity",
            "data=custom",
            f"paths.raw_zip={zip_path}",
            "data.min_user_interactions=1",
            "data.min_item_interactions=1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "artifacts/metrics.json").exists()


def test_train_with_popularity_model_on_the_real_small_dataset(tmp_path, small_movielens_zip):
    result = run_cli(
        ["train", "model=popularity", "data=ml-latest-small", f"paths.raw_zip={small_movielens_zip}"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "artifacts/metrics.json").read_text())
    assert report["dataset"] == {
        "name": "ml-latest-small",
        "users": 603,
        "items": 1956,
        "train_rows": 40033,
        "val_rows": 603,
        "test_rows": 603,
    }
    assert set(report["test"]) == {"popularity"}
    # An independent count from the processed files: popularity over train + val, each user's
    # train and val movies excluded, ties against the model.
    import numpy as np
    import polars as pl

    processed = tmp_path / "data/processed"
    train, val, test = (pl.read_parquet(processed / f"{name}.parquet") for name in ("train", "val", "test"))
    history = pl.concat([train, val])
    counts = np.bincount(history["item_idx"].to_numpy(), minlength=1956)
    seen = {}
    for user, item in history.select("user_idx", "item_idx").iter_rows():
        seen.setdefault(user, set()).add(item)
    ranks = []
    for user, target in test.select("user_idx", "item_idx").iter_rows():
        others = np.ones(1956, dtype=bool)
        others[list(seen[user])] = False
        others[target] = False
        ranks.append(int(np.sum(counts[others] >= counts[target])))
    assert report["test"]["popularity"]["recall@50"] == pytest.approx(np.mean(np.array(ranks) < 50))
