import numpy as np
import polars as pl
import pytest
import torch
from support import SHARED_SMALL_ZIP

from two_tower_recsys.pipelines.hydra_edge import compose_settings
from two_tower_recsys.preprocessing.histories import (
    SERVING,
    histories_for,
    recent_positives,
    training_windows,
)
from two_tower_recsys.preprocessing.prepare import prepare_dataset


def test_last_positives_per_user_in_time_order_with_ties_by_movie():
    positives = pl.DataFrame(
        {
            "user_idx": [1, 1, 1, 1, 0, 2],
            "item_idx": [9, 4, 7, 3, 5, 6],
            "timestamp": [30, 20, 20, 10, 5, 1],
        }
    )
    histories = recent_positives(positives, n_users=4, max_length=3)
    assert histories.lengths.tolist() == [1, 3, 1, 0]
    assert histories.items[1].tolist() == [4, 7, 9]  # 3 (oldest) dropped; 4 before 7 at time 20
    assert histories.items[0, 0] == 5 and histories.items[2, 0] == 6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    if not SHARED_SMALL_ZIP.exists():
        pytest.skip(f"real MovieLens data not available: {SHARED_SMALL_ZIP} is absent")
    directory = tmp_path_factory.mktemp("histories")
    settings = compose_settings(
        ["data=ml-latest-small", f"paths.raw_zip={SHARED_SMALL_ZIP}", f"paths.processed_dir={directory}"]
    )
    return prepare_dataset(settings.data, settings.paths, progress=False)


def split_order(dataset):
    """Every positive with its split, in the split's own order (user, timestamp, movieId)."""
    frames = [
        dataset.split(name).with_columns(pl.lit(name).alias("split")) for name in ("train", "val", "test")
    ]
    return pl.concat(frames).sort(["user_idx", "timestamp", "item_idx"])


@pytest.mark.parametrize(("split", "readable"), [("val", {"train"}), ("test", {"train", "val"})])
def test_a_history_ends_right_before_the_held_out_movie(dataset, split, readable):
    max_length = 20
    histories = histories_for(dataset, split, max_length)
    ordered = split_order(dataset)
    for user, rows in ordered.group_by("user_idx"):
        user = user[0]
        held_out = rows.filter(pl.col("split") == split)
        if held_out.height == 0:
            continue
        cut = int(np.flatnonzero(rows.get_column("split").to_numpy() == split)[0])
        before = rows[:cut]
        assert set(before.get_column("split")) <= readable  # nothing of a later split precedes it
        expected = before.get_column("item_idx").to_list()[-max_length:]
        got = histories.items[user, : histories.lengths[user]].tolist()
        assert got == expected
        assert held_out.get_column("item_idx")[0] not in got


def test_serving_reads_every_split_and_validation_reads_train_only(dataset):
    val, test, serving = (histories_for(dataset, name, 500) for name in ("val", "test", SERVING))
    counts = {
        name: np.bincount(dataset.split(name).get_column("user_idx").to_numpy(), minlength=dataset.n_users)
        for name in ("train", "val", "test")
    }
    assert torch.equal(val.lengths, torch.from_numpy(np.minimum(counts["train"], 500)))
    assert torch.equal(test.lengths, torch.from_numpy(np.minimum(counts["train"] + counts["val"], 500)))
    assert int(serving.lengths.sum()) > int(test.lengths.sum())
    with pytest.raises(ValueError, match="no histories for split 'train'"):
        histories_for(dataset, "train", 5)


def test_training_windows_make_every_positive_but_the_first_a_target_once():
    # user 0: movies 10..16 (ties on timestamp 3 break by item), user 1: two movies, user 2: one.
    frame = pl.DataFrame(
        {
            "user_idx": [0] * 7 + [1, 1, 2],
            "item_idx": [10, 11, 13, 12, 14, 15, 16, 21, 20, 30],
            "timestamp": [0, 1, 3, 3, 4, 5, 6, 1, 0, 0],
        }
    )
    windows = training_windows(frame, n_users=3, max_inputs=3)
    rows = [windows.items[i, : windows.lengths[i]].tolist() for i in range(len(windows.lengths))]
    # newest window first per user: the movie before the first target, then the targets
    assert rows == [[13, 14, 15, 16], [10, 11, 12, 13], [20, 21]]
    targets = sorted(movie for row in rows for movie in row[1:])
    assert targets == [11, 12, 13, 14, 15, 16, 21]  # each once; the first movies are never targets
    assert torch.equal(windows.items[0], recent_positives(frame, 3, 4).items[0])  # newest = recent


@pytest.mark.parametrize("max_inputs", [1, 2, 5, 50])
def test_training_windows_cover_random_histories(max_inputs):
    rng = np.random.default_rng(max_inputs)
    users = np.repeat(np.arange(40), rng.integers(0, 30, 40))
    frame = pl.DataFrame(
        {"user_idx": users, "item_idx": np.arange(len(users)), "timestamp": rng.integers(0, 5, len(users))}
    )
    windows = training_windows(frame, n_users=40, max_inputs=max_inputs)
    assert int(windows.lengths.max()) <= max_inputs + 1 and int(windows.lengths.min()) >= 2
    counts = np.bincount(users, minlength=40)
    assert int((windows.lengths - 1).sum()) == int(np.maximum(counts - 1, 0).sum())
