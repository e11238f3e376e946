"""Cold-start measurement: metrics against hand-computed ranks, baselines, the held-out split, the table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from support import TINY_SYNTHETIC, scratch_paths

from two_tower_recsys.errors import ConfigError
from two_tower_recsys.evaluation.bootstrap import BootstrapSettings
from two_tower_recsys.evaluation.cold_start import (
    ColdStartTask,
    bootstrap_bounds,
    genre_affinity_scores,
    genre_popularity_scores,
    per_user_values,
)
from two_tower_recsys.pipelines import train_pipeline
from two_tower_recsys.pipelines.cold_start import hold_out_movies
from two_tower_recsys.pipelines.hydra_edge import compose_settings
from two_tower_recsys.preprocessing.prepare import prepare_dataset
from two_tower_recsys.settings import EvalConfig


def test_recall_and_ndcg_of_several_positives_by_hand():
    # user 0 ranks the 4 held-out movies 2 > 0 > 3 > 1 and liked 0 and 1;
    # user 5 ranks 1 > 0 > ... and liked 3 only.
    scores = torch.tensor([[0.5, 0.1, 0.9, 0.2], [0.8, 0.9, 0.3, 0.1]])
    task = ColdStartTask.from_pairs(np.array([5, 0, 0]), np.array([3, 1, 0]))
    assert task.users.tolist() == [0, 5]
    values = per_user_values(scores, task, recall_ks=(2, 10), ndcg_ks=(2,))
    discount = [1 / math.log2(2), 1 / math.log2(3)]
    # user 0: hit at rank 2 only within 2; all within 10 (k above the 4 movies counts every one)
    assert values[0].tolist() == pytest.approx([0.5, 1.0, discount[1] / (discount[0] + discount[1])])
    assert values[1].tolist() == pytest.approx([0.0, 1.0, 0.0])  # movie 3 is last


def test_the_bootstrap_interval_holds_the_mean_and_has_no_width_without_spread():
    settings = BootstrapSettings(n_resamples=200, seed=1)
    values = np.stack([np.arange(100) / 100, np.full(100, 0.3)], axis=1)
    low, high = bootstrap_bounds(values, settings)
    assert low[0] < values[:, 0].mean() < high[0]
    assert low[1] == pytest.approx(0.3) and high[1] == pytest.approx(0.3)


def test_genre_baselines_by_hand():
    warm_genres = np.array([[1, 0], [1, 0], [0, 1]], dtype=bool)  # genres A, A, B
    warm_positives = np.array([3, 1, 4])  # A: 4 positives, B: 4
    cold_genres = np.array([[1, 0], [1, 1], [0, 0]], dtype=bool)
    popularity = genre_popularity_scores(cold_genres, warm_genres, warm_positives)
    assert popularity.tolist() == [[0.5, 0.5, 0.0]]
    user_genres = np.array([[3.0, 1.0], [0.0, 0.0]])  # user 0: 75% A; user 1: nothing yet
    affinity = genre_affinity_scores(cold_genres, np.array([0, 1]), user_genres)
    assert affinity.tolist() == [[0.75, 0.5, 0.0], [0.0, 0.0, 0.0]]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cold")
    settings = compose_settings(
        [*TINY_SYNTHETIC, f"paths.raw_zip={root / 'raw.zip'}", f"paths.processed_dir={root / 'processed'}"]
    )
    return prepare_dataset(settings.data, settings.paths, progress=False)


def test_held_out_movies_lose_every_rating_and_keep_their_positives_for_the_task(tiny_dataset):
    split = hold_out_movies(tiny_dataset, 0.25, seed=3)
    assert len(split.cold_items) == round(0.25 * tiny_dataset.n_items)
    assert split.cold_items.tolist() == hold_out_movies(tiny_dataset, 0.25, seed=3).cold_items.tolist()
    cold = set(split.cold_items.tolist())
    for frame in (split.warm.train, split.warm.val, split.warm.test):
        assert not cold & set(frame["item_idx"].to_list())
    original = [
        (u, i)
        for f in (tiny_dataset.train, tiny_dataset.val, tiny_dataset.test)
        for u, i in f.select("user_idx", "item_idx").iter_rows()
        if i in cold
    ]
    owners = np.repeat(split.task.users, np.diff(split.task.indptr))
    held = sorted(zip(owners.tolist(), split.cold_items[split.task.positives].tolist(), strict=True))
    assert held == sorted(original)
    kept = tiny_dataset.train.height + tiny_dataset.val.height + tiny_dataset.test.height
    assert kept == split.warm.train.height + split.warm.val.height + split.warm.test.height + len(original)


def test_a_cold_start_share_outside_0_1_is_a_config_error():
    with pytest.raises(ConfigError, match=r"eval.cold_start_share must be in \[0, 1\)"):
        EvalConfig(cold_start_share=1.0)


def test_train_reports_cold_start_in_metrics_json_and_the_table(tmp_path, capsys):
    base = [o for o in TINY_SYNTHETIC if not o.startswith("trainer.max_epochs")]
    settings = compose_settings(
        [
            *base,
            "trainer.max_epochs=1",
            "logging.enabled=false",
            "model.item_features=[id,genres,year,title]",
            "eval.cold_start_share=0.2",
            *scratch_paths(tmp_path),
        ]
    )
    train_pipeline.run(settings)
    report = json.loads((tmp_path / "artifacts/metrics.json").read_text())["cold_start"]
    assert report["movies"] == 24 and report["users"] > 0
    for model in ("two_tower", "genre_popularity", "genre_affinity"):
        for name, value in report["metrics"][model].items():
            low, high = report["intervals"][model][name]
            assert low <= value <= high
    assert "two_tower-genre_popularity" in report["paired"]
    assert "cold start: " in capsys.readouterr().out
