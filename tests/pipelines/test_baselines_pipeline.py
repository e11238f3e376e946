"""A baseline evaluated alone: metrics.json and the printed table carry it, its sections and its tuning."""

import json

from support import TINY_SYNTHETIC

from two_tower_recsys.pipelines import evaluate_pipeline, train_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings


def test_evaluating_ease_alone_reports_it_with_its_chosen_l2_and_sections(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [
        *TINY_SYNTHETIC,
        "logging.enabled=false",
        "eval.bootstrap_resamples=200",
        "eval.ease_l2_grid=[1,100]",
    ]
    evaluate_pipeline.run(compose_settings([*args, "model=ease"]))

    report = json.loads((tmp_path / "artifacts/metrics.json").read_text())
    assert set(report["val"]) == set(report["test"]) == {"ease"}
    assert set(report["intervals"]["test"]["ease"]) == set(report["test"]["ease"])
    tuning = report["baselines"]["ease"]
    assert tuning["parameter"] == "l2" and tuning["grid"] == [1.0, 100.0]
    assert set(tuning["validation"]) == {"1", "100"}
    assert tuning["validation"][f"{tuning['chosen']:g}"] == max(tuning["validation"].values())
    assert set(report["beyond_accuracy"]["ease"]) == {
        f"{name}@{k}"
        for k in (10, 50)
        for name in ("coverage", "popularity_percentile", "top20_share", "novelty")
    }
    segments = report["segments"]["ease"]
    assert segments["metrics"] == ["recall@50", "ndcg@50"]
    by_history = segments["by"]["history_length"]
    assert sum(entry["users"] for entry in by_history.values()) == report["dataset"]["test_rows"]
    assert (
        sum(entry["users"] for entry in segments["by"]["movie_popularity"].values())
        == (report["dataset"]["test_rows"])
    )

    table = capsys.readouterr().out
    low, high = report["intervals"]["test"]["ease"]["recall@50"]
    assert f"{report['test']['ease']['recall@50']:.4f} [{low:.3f}, {high:.3f}]" in table
    assert f"ease: l2={tuning['chosen']:g} chosen on validation recall@50" in table
    assert "test recall@50 by segment" in table and "test top-K lists, beyond accuracy" in table


def test_training_without_baselines_reports_the_two_tower_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [*TINY_SYNTHETIC, "logging.enabled=false", "eval.bootstrap_resamples=50", "eval.baselines=[]"]
    train_pipeline.run(compose_settings([*args, "trainer.max_epochs=1"]))

    report = json.loads((tmp_path / "artifacts/metrics.json").read_text())
    assert set(report["test"]) == {"two_tower"}
    assert "two_tower" in capsys.readouterr().out
