"""metrics.json: old keys unchanged, intervals stored with each model, paired entries per run."""

import json

import numpy as np
import pytest

from two_tower_recsys.evaluation.bootstrap import BootstrapSettings, bootstrap_metrics
from two_tower_recsys.evaluation.metrics import summarize
from two_tower_recsys.evaluation.report import format_table, record_models, update_metrics_file

STATS = {"name": "d", "users": 400, "items": 300, "train_rows": 9000, "val_rows": 400, "test_rows": 400}
NAMES = ["recall@10", "recall@50", "recall@100", "ndcg@10", "ndcg@50"]
SETTINGS = BootstrapSettings(n_resamples=200, seed=1)
RANKS = {
    model: {
        split: np.random.default_rng(seed).geometric(1 / mean, 400) - 1
        for split, seed in (("val", seed_base), ("test", seed_base + 1))
    }
    for model, mean, seed_base in (("two_tower", 30, 0), ("popularity", 90, 10))
}


def metrics(model):
    return {split: summarize(ranks, (10, 50, 100), (10, 50)) for split, ranks in RANKS[model].items()}


def bootstrap(models, pairs=(), settings=SETTINGS):
    return {
        split: bootstrap_metrics({m: RANKS[m][split] for m in models}, NAMES, settings, pairs)
        for split in ("val", "test")
    }


def write_popularity_then_both(path):
    update_metrics_file(path, STATS, "popularity", metrics("popularity"), bootstrap(["popularity"]))
    both = bootstrap(["two_tower", "popularity"], [("two_tower", "popularity")])
    return update_metrics_file(path, STATS, "two_tower", metrics("two_tower"), both), both


def test_a_run_of_both_models_writes_intervals_and_paired_beside_the_old_keys(tmp_path):
    path = tmp_path / "metrics.json"
    report, both = write_popularity_then_both(path)

    assert json.loads(path.read_text()) == report
    assert set(report) == {"dataset", "val", "test", "bootstrap", "intervals", "paired"}
    assert report["dataset"] == {key: STATS[key] for key in STATS}
    assert report["bootstrap"] == {"n_resamples": 200, "seed": 1, "confidence": 0.95}
    for split in ("val", "test"):
        assert report[split] == {
            "popularity": metrics("popularity")[split],
            "two_tower": metrics("two_tower")[split],
        }
        for model in ("popularity", "two_tower"):
            intervals = report["intervals"][split][model]
            assert set(intervals) == set(NAMES)
            assert intervals == {name: list(bounds) for name, bounds in both[split].intervals[model].items()}
            for name, (low, high) in intervals.items():
                assert low <= report[split][model][name] <= high
        paired = report["paired"][split]["two_tower-popularity"]
        assert set(paired) == set(NAMES)
        for name, entry in paired.items():
            assert set(entry) == {"diff", "ci95"}
            assert entry["diff"] == pytest.approx(
                report[split]["two_tower"][name] - report[split]["popularity"][name]
            )
            assert entry["ci95"][0] <= entry["diff"] <= entry["ci95"][1]


def test_re_evaluating_one_model_keeps_the_others_intervals_and_drops_stale_pairs(tmp_path):
    path = tmp_path / "metrics.json"
    write_popularity_then_both(path)
    report = update_metrics_file(path, STATS, "popularity", metrics("popularity"), bootstrap(["popularity"]))
    assert set(report["intervals"]["test"]) == {"popularity", "two_tower"}
    assert report["paired"] == {"val": {}, "test": {}}
    assert set(report["test"]) == {"popularity", "two_tower"}


def test_a_model_written_without_intervals_loses_its_old_ones(tmp_path):
    path = tmp_path / "metrics.json"
    write_popularity_then_both(path)
    report = update_metrics_file(path, STATS, "two_tower", metrics("two_tower"))
    assert set(report["intervals"]["test"]) == {"popularity"}
    assert report["paired"]["test"] == {}


def test_other_bootstrap_settings_drop_the_intervals_they_would_not_describe(tmp_path):
    path = tmp_path / "metrics.json"
    write_popularity_then_both(path)
    other = BootstrapSettings(n_resamples=100, seed=2)
    report = update_metrics_file(
        path, STATS, "popularity", metrics("popularity"), bootstrap(["popularity"], settings=other)
    )
    assert report["bootstrap"]["n_resamples"] == 100
    assert set(report["intervals"]["test"]) == {"popularity"}
    assert "paired" not in report or not any(report["paired"].values())


def test_a_file_from_before_intervals_is_extended_not_replaced(tmp_path):
    path = tmp_path / "metrics.json"
    old = {"dataset": STATS, "val": {"two_tower": metrics("two_tower")["val"]}, "test": {}}
    path.write_text(json.dumps(old))
    report = update_metrics_file(path, STATS, "popularity", metrics("popularity"), bootstrap(["popularity"]))
    assert report["val"]["two_tower"] == old["val"]["two_tower"]
    assert set(report["intervals"]["val"]) == {"popularity"}
    assert "two_tower" in format_table(report)


def test_the_table_shows_every_value_with_its_interval_within_80_columns(tmp_path):
    report, _ = write_popularity_then_both(tmp_path / "metrics.json")
    table = format_table(report)
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0] == "val: 400 users" and "two_tower - popularity" in lines[1]
    value = report["test"]["two_tower"]["recall@50"]
    low, high = report["intervals"]["test"]["two_tower"]["recall@50"]
    diff = report["paired"]["test"]["two_tower-popularity"]["recall@50"]
    (row,) = [line for line in table.split("test: ")[1].splitlines() if line.startswith("recall@50 ")]
    assert f"{value:.4f} [{low:.3f}, {high:.3f}]" in row
    assert f"{diff['diff']:+.4f} [{diff['ci95'][0]:.3f}, {diff['ci95'][1]:.3f}]" in row
    assert "95% percentile bootstrap over users (200 resamples, seed 1)" in lines[-1]


def test_the_table_without_intervals_shows_plain_values():
    report = {"dataset": STATS, "val": {}, "test": {"popularity": {"recall@10": 0.125}}}
    table = format_table(report)
    assert "0.1250" in table and "[" not in table
    assert format_table({"val": {}, "test": {}}) == "(no metrics)"


def test_several_models_and_their_sections_are_recorded_in_one_write(tmp_path):
    path = tmp_path / "metrics.json"
    both = bootstrap(["two_tower", "popularity"], [("two_tower", "popularity")])
    sections = {
        "beyond_accuracy": {"two_tower": {"coverage@10": 0.5}, "popularity": {"coverage@10": 0.01}},
        "baselines": {
            "popularity": {
                "parameter": "l2",
                "grid": [1.0, 10.0],
                "selected_by": "recall@50",
                "validation": {"1": 0.2, "10": 0.3},
                "chosen": 10.0,
                "fit_seconds": 0.5,
            }
        },
    }
    report = record_models(
        path, STATS, {"popularity": metrics("popularity"), "two_tower": metrics("two_tower")}, both, sections
    )
    assert json.loads(path.read_text()) == report
    assert set(report["intervals"]["test"]) == {"popularity", "two_tower"}
    assert set(report["paired"]["test"]) == {"two_tower-popularity"}
    assert report["beyond_accuracy"]["popularity"] == {"coverage@10": 0.01}
    table = format_table(report)
    assert "test top-K lists, beyond accuracy" in table
    (row,) = [line for line in table.splitlines() if line.startswith("coverage@10")]
    assert row.split()[1:] == ["0.5000", "0.0100"]  # models in the section's order
    assert "popularity: l2=10 chosen on validation recall@50 from [1.0, 10.0]" in table

    # Re-evaluated without sections, a model loses its old entries there; the other keeps its own.
    report = update_metrics_file(path, STATS, "popularity", metrics("popularity"), bootstrap(["popularity"]))
    assert "popularity" not in report["beyond_accuracy"] and "popularity" not in report["baselines"]
    assert report["beyond_accuracy"]["two_tower"] == {"coverage@10": 0.5}


def test_a_wide_table_puts_the_paired_differences_below_the_models(tmp_path):
    ranks = {**{model: RANKS[model] for model in RANKS}, "third": RANKS["popularity"]}
    pairs = [("two_tower", "popularity"), ("two_tower", "third")]
    by_split = {
        split: bootstrap_metrics({m: ranks[m][split] for m in ranks}, NAMES, SETTINGS, pairs)
        for split in ("val", "test")
    }
    report = record_models(
        tmp_path / "metrics.json",
        STATS,
        {
            "popularity": metrics("popularity"),
            "two_tower": metrics("two_tower"),
            "third": metrics("popularity"),
        },
        by_split,
    )
    table = format_table(report)
    assert max(len(line) for line in table.splitlines()) <= 110
    models_block, pairs_block = table.split("test: 400 users")[1].split("test: paired differences")
    assert "third" in models_block.splitlines()[1] and "two_tower - " not in models_block
    assert "two_tower - popularity" in pairs_block.splitlines()[1]
    assert "two_tower - third" in pairs_block.splitlines()[1]


def test_segments_print_one_compact_table_per_metric():
    entry = {
        "split": "test",
        "metrics": ["recall@50", "ndcg@50"],
        "note": "head: >= 9 train users, tail: <= 2",
        "by": {
            "history_length": {
                "<=10": {
                    "users": 3,
                    "recall@50": 0.5,
                    "ndcg@50": 0.25,
                    "intervals": {"recall@50": [0.1, 0.9]},
                },
                ">200": {"users": 0},
            }
        },
    }
    report = {"dataset": STATS, "val": {}, "test": {"m": {"recall@50": 0.5}}, "segments": {"m": entry}}
    table = format_table(report)
    assert "test recall@50 by segment (head: >= 9 train users, tail: <= 2)" in table
    (row,) = [line for line in table.split("test ndcg@50 by segment")[0].splitlines() if "<=10" in line]
    assert row.split() == ["history_length", "<=10", "3", "0.5000", "[0.100,", "0.900]"]
    (empty,) = [line for line in table.split("test ndcg@50 by segment")[0].splitlines() if ">200" in line]
    assert empty.split() == ["history_length", ">200", "0"]
