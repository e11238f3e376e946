"""`two-tower evaluate` after `two-tower train`: intervals for the re-evaluated model, no stale pairs."""

import json

import pytest
from support import TINY_SYNTHETIC

from two_tower_recsys.pipelines import evaluate_pipeline, train_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings

pytestmark = pytest.mark.slow


def test_evaluating_one_model_rewrites_its_intervals_and_drops_the_pair_it_was_in(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    args = [*TINY_SYNTHETIC, "logging.enabled=false", "trainer.max_epochs=1"]
    train_pipeline.run(compose_settings(args))
    trained = json.loads((tmp_path / "artifacts/metrics.json").read_text())
    assert set(trained["paired"]["test"]) == {"two_tower-popularity"}
    capsys.readouterr()

    evaluate_pipeline.run(compose_settings([*args, "model=two_tower", "eval.bootstrap_resamples=1000"]))

    report = json.loads((tmp_path / "artifacts/metrics.json").read_text())
    for split in ("val", "test"):
        # The same index and bootstrap settings: the same metrics and intervals as training wrote.
        assert report[split] == trained[split]
        assert report["intervals"][split] == trained["intervals"][split]
        # A pair needs both models' ranks from one process; evaluate ranks only one model.
        assert report["paired"][split] == {}
    table = capsys.readouterr().out
    low, high = report["intervals"]["test"]["two_tower"]["recall@50"]
    assert f"[{low:.3f}, {high:.3f}]" in table and "two_tower - popularity" not in table
