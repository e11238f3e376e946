"""`two-tower evaluate` after `two-tower train`: intervals for the re-evaluated model, no stale pairs."""

import json

import pytest
from support import TINY_SYNTHETIC

from two_tower_recsys.pipelines import evaluate_pipeline, train_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings

pytestmark = pytest.mark.slow


BASELINES = {"popularity", "ease", "als"}


def test_train_and_evaluate_report_every_baseline_paired_with_the_two_tower(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [*TINY_SYNTHETIC, "logging.enabled=false", "trainer.max_epochs=1"]
    train_pipeline.run(compose_settings(args))
    trained = json.loads((tmp_path / "artifacts/metrics.json").read_text())
    pairs = {f"two_tower-{baseline}" for baseline in BASELINES}
    for split in ("val", "test"):
        assert set(trained[split]) == {*BASELINES, "two_tower"}
        assert set(trained["intervals"][split]) == {*BASELINES, "two_tower"}
        assert set(trained["paired"][split]) == pairs
    for section in ("beyond_accuracy", "segments"):
        assert set(trained[section]) == {*BASELINES, "two_tower"}
    assert set(trained["baselines"]) == {"ease", "als"}  # popularity has nothing to tune
    assert (tmp_path / "plots/recall_at_k_test.png").exists()
    assert (tmp_path / "plots/recall_by_segment_test.png").exists()
    table = capsys.readouterr().out
    for pair in pairs:
        assert pair.replace("-", " - ") in table

    evaluate_pipeline.run(compose_settings([*args, "model=two_tower"]))

    report = json.loads((tmp_path / "artifacts/metrics.json").read_text())
    for split in ("val", "test"):
        # The same index and baselines: the same metrics (up to float summation order) and pairs.
        for model, metrics in trained[split].items():
            assert report[split][model] == pytest.approx(metrics, abs=1e-6)
        assert set(report["paired"][split]) == pairs
    table = capsys.readouterr().out
    low, high = report["intervals"]["test"]["two_tower"]["recall@50"]
    assert f"[{low:.3f}, {high:.3f}]" in table and "two_tower - ease" in table


def test_evaluating_a_baseline_alone_drops_the_pair_it_was_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*TINY_SYNTHETIC, "logging.enabled=false", "trainer.max_epochs=1", "eval.baselines=[popularity]"]
    train_pipeline.run(compose_settings(args))
    evaluate_pipeline.run(compose_settings([*args, "model=popularity"]))
    report = json.loads((tmp_path / "artifacts/metrics.json").read_text())
    assert set(report["test"]) == {"popularity", "two_tower"}
    # A pair needs both models' ranks from one process; popularity alone ranks only itself.
    assert report["paired"]["test"] == {}
