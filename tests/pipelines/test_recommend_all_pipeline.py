"""`two-tower recommend-all` as a user runs it: one parquet file, one-line errors."""

import polars as pl
import pytest
from inference_support import write_known_index
from support import run_cli

from two_tower_recsys.pipelines import recommend_all_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings


def test_run_writes_every_users_top_k(tmp_path):
    artifacts = write_known_index(tmp_path / "artifacts")
    settings = compose_settings(
        [f"paths.artifacts_dir={artifacts}", "infer.k=2", "trainer.progress_bar=false"]
    )
    recommend_all_pipeline.run(settings)
    table = pl.read_parquet(artifacts / "recommendations.parquet")
    # userId 3's best unseen movie, 50, was rated 2 stars: excluded by default
    assert table.filter(pl.col("user_id") == 3).rows() == [(3, 1, 40, 4.0), (3, 2, 30, 3.0)]
    assert sorted(set(table.get_column("user_id").to_list())) == [3, 7, 11]


@pytest.mark.slow
def test_cli_writes_the_file_and_reports_missing_artifacts(tmp_path):
    artifacts = write_known_index(tmp_path / "artifacts")
    output = tmp_path / "out" / "all.parquet"
    args = ["recommend-all", f"paths.artifacts_dir={artifacts}", f"paths.recommendations={output}"]
    result = run_cli([*args, "infer.k=1", "infer.index=pq", "infer.exclude=positives"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert pl.read_parquet(output).rows() == [(7, 1, 20, 5.0), (3, 1, 50, 5.0), (11, 1, 60, 4.0)]
    missing = run_cli(["recommend-all", f"paths.artifacts_dir={tmp_path / 'none'}"], tmp_path)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "manifest.json" in missing.stderr
