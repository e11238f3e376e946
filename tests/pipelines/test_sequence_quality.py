"""The sequence user tower's recipe (experiment=sequence) clears floors set from its spread over seeds."""

import json

import pytest
from support import POPULARITY_TEST_RECALL_AT_50, quality_floors

from two_tower_recsys.pipelines import train_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings

pytestmark = pytest.mark.slow

# Test Recall@50 of experiment=sequence capped at 10 of its 40 epochs (the cap halves the test's
# time; the recipe's best epochs are 15-34), on ml-latest-small, seeds 0-4 (`two-tower train
# experiment=sequence trainer.max_epochs=10 eval.baselines=[popularity] seed=N`, label smoothing
# 0.2; seed 42, this test's, gave 0.2935 and was not used). Popularity: 0.1376.
SEED_TEST_RECALL_AT_50 = {0: 0.2886, 1: 0.3018, 2: 0.3068, 3: 0.3234, 4: 0.2919}


def test_the_sequence_recipe_beats_its_floors_on_real_movielens(tmp_path, monkeypatch, small_movielens_zip):
    """Floors: Recall@50 0.3025 - 3 x 0.0138 = 0.261; ratio to popularity 2.198 - 3 x 0.100 = 1.90
    (per seed 2.097, 2.193, 2.230, 2.350, 2.121). Below them a run is 3 sd out: a regression."""
    recall_floor, ratio_floor = quality_floors(SEED_TEST_RECALL_AT_50)
    assert 0.260 < recall_floor < 0.262 and 1.89 < ratio_floor < 1.90  # the docstring's derivation
    monkeypatch.chdir(tmp_path)
    settings = compose_settings(
        [
            "experiment=sequence",
            "data=ml-latest-small",
            f"paths.raw_zip={small_movielens_zip}",
            "logging.enabled=false",
            "trainer.progress_bar=false",
            "trainer.max_epochs=10",
            "eval.baselines=[popularity]",  # the only baseline this test reads
        ]
    )
    train_pipeline.run(settings)
    report = json.loads((tmp_path / "artifacts/metrics.json").read_text())
    sequence, popularity = report["test"]["two_tower"]["recall@50"], report["test"]["popularity"]["recall@50"]
    assert popularity == pytest.approx(POPULARITY_TEST_RECALL_AT_50, abs=1e-4)
    assert sequence >= recall_floor
    assert sequence >= ratio_floor * popularity
