"""End to end: `two-tower train` on tiny synthetic data, with a real MLflow server."""

import json
import shutil

import pytest
from mlflow.tracking import MlflowClient
from support import POPULARITY_TEST_RECALL_AT_50, TINY_SYNTHETIC, quality_floors, run_cli

from two_tower_recsys.artifacts.store import load_index
from two_tower_recsys.errors import ArtifactError
from two_tower_recsys.pipelines import train_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings

pytestmark = pytest.mark.slow

METRIC_KEYS = {"recall@10", "recall@50", "recall@100", "ndcg@10", "ndcg@50"}


def test_train_logs_params_metrics_and_artifacts_to_a_real_mlflow_server(
    tmp_path, monkeypatch, mlflow_server
):
    monkeypatch.chdir(tmp_path)
    settings = compose_settings(
        [
            *TINY_SYNTHETIC,
            f"logging.mlflow.tracking_uri={mlflow_server}",
            "logging.mlflow.experiment_name=e2e",
        ]
    )
    train_pipeline.run(settings)

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("e2e")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model.embedding_dim"] == "64"
    assert params["trainer.max_interactions"] == "2000000"
    assert params["data.name"] == "synthetic"
    tags = run.data.tags
    assert len(tags["git_commit"]) >= 7 and tags["dataset"] == "synthetic"
    assert (
        tags["dataset_md5"] == json.loads((tmp_path / "data/processed/stats.json").read_text())["input_md5"]
    )
    assert int(tags["dataset.users"]) > 0
    history = client.get_metric_history(run.info.run_id, "val_recall_at_50")
    assert len(history) == 2  # one per epoch
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
    metrics = run.data.metrics
    for model in ("two_tower", "popularity", "ease", "als"):
        for split in ("val", "test"):
            assert 0.0 <= metrics[f"{split}_{model}_recall_at_50"] <= 1.0
        assert 0.0 < metrics[f"test_{model}_coverage_at_10"] <= 1.0
    assert metrics["ease_chosen_l2"] in (50, 200, 500, 2000)
    assert metrics["als_chosen_regularization"] in (1, 10, 100)
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"learning_curves.png", "recall_at_k_test.png", "recall_by_segment_test.png", "metrics.json"} <= (
        artifacts
    )

    report = json.loads((tmp_path / "artifacts/metrics.json").read_text())
    assert set(report["dataset"]) == {"name", "users", "items", "train_rows", "val_rows", "test_rows"}
    for split in ("val", "test"):
        assert set(report[split]) == {"popularity", "ease", "als", "two_tower"}
        assert set(report[split]["two_tower"]) == METRIC_KEYS
        assert report[split]["two_tower"]["recall@50"] == pytest.approx(
            metrics[f"{split}_two_tower_recall_at_50"]
        )
    assert report["bootstrap"] == {"n_resamples": 1000, "seed": 0, "confidence": 0.95}
    for split in ("val", "test"):
        for model in ("two_tower", "popularity"):
            bounds = report["intervals"][split][model]
            assert set(bounds) == METRIC_KEYS
            low, high = (
                metrics[f"{split}_{model}_recall_at_50_ci_low"],
                metrics[f"{split}_{model}_recall_at_50_ci_high"],
            )
            assert [low, high] == pytest.approx(bounds["recall@50"])
            assert low <= report[split][model]["recall@50"] <= high
        paired = report["paired"][split]["two_tower-popularity"]
        assert set(paired) == METRIC_KEYS
        logged = f"{split}_two_tower_minus_popularity_ndcg_at_10"
        assert metrics[f"{logged}_diff"] == pytest.approx(paired["ndcg@10"]["diff"])
        assert [metrics[f"{logged}_ci_low"], metrics[f"{logged}_ci_high"]] == pytest.approx(
            paired["ndcg@10"]["ci95"]
        )
    index = load_index(tmp_path / "artifacts")
    assert index.manifest["dataset"]["input_md5"] == tags["dataset_md5"]
    assert index.user_embeddings.shape == (report["dataset"]["users"], 64)
    assert (tmp_path / "artifacts/model.ckpt").exists()
    assert (tmp_path / "plots/learning_curves.png").stat().st_size > 10_000


def test_cli_trains_without_a_server_and_says_where_it_logged(tmp_path):
    closed_port_uri = "http://127.0.0.1:9"  # discard port: nothing answers
    result = run_cli(["train", *TINY_SYNTHETIC, f"logging.mlflow.tracking_uri={closed_port_uri}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no MLflow server answers at http://127.0.0.1:9" in result.stderr
    assert (tmp_path / "mlruns/mlflow.db").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns/mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("two-tower-recsys").experiment_id])
    assert "val_recall_at_50" in run.data.metrics
    assert "two_tower" in result.stdout and "popularity" in result.stdout  # the final table
    assert "Traceback" not in result.stderr
    # trainer.progress_bar=false silences every bar, the answer table's of both packages too
    # (a tqdm bar redraws itself with carriage returns).
    assert "\r" not in result.stderr
    # The model logged to MLflow copies the local package's answer table: scored once, not twice.
    assert "answer table: the one already built for this index, not scored again" in result.stderr


def test_a_crash_mid_training_leaves_the_previous_artifacts_usable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = compose_settings([*TINY_SYNTHETIC, "logging.enabled=false"])
    train_pipeline.run(settings)
    before = load_index(tmp_path / "artifacts").manifest

    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(train_pipeline, "fit_two_tower", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        train_pipeline.run(compose_settings([*TINY_SYNTHETIC, "logging.enabled=false", "seed=7"]))
    assert load_index(tmp_path / "artifacts").manifest == before
    assert not list(tmp_path.glob("artifacts/.*staging*"))


def test_loaders_refuse_truncated_artifacts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train_pipeline.run(compose_settings([*TINY_SYNTHETIC, "logging.enabled=false", "trainer.max_epochs=1"]))
    embeddings = tmp_path / "artifacts/item_embeddings.pt"
    backup = tmp_path / "backup.pt"
    shutil.copyfile(embeddings, backup)
    embeddings.write_bytes(backup.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="item_embeddings.pt has 100 bytes"):
        load_index(tmp_path / "artifacts")
    data = bytearray(backup.read_bytes())
    data[-10] ^= 0xFF
    embeddings.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its checksum"):
        load_index(tmp_path / "artifacts")


def test_training_is_deterministic_on_cpu(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*TINY_SYNTHETIC, "logging.enabled=false", "trainer.max_epochs=1"]
    train_pipeline.run(compose_settings([*args, "paths.artifacts_dir=a1"]))
    train_pipeline.run(compose_settings([*args, "paths.artifacts_dir=a2"]))
    first, second = load_index(tmp_path / "a1"), load_index(tmp_path / "a2")
    assert (first.item_embeddings == second.item_embeddings).all()
    assert (first.user_embeddings == second.user_embeddings).all()


def test_ddp_on_two_cpu_processes_gives_the_single_process_metrics(tmp_path):
    result = run_cli(
        [
            "train",
            *TINY_SYNTHETIC,
            "trainer.strategy=ddp",
            "trainer.devices=2",
            "logging.mlflow.tracking_uri=http://127.0.0.1:9",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stderr  # a second process really trained
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns/mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("two-tower-recsys").experiment_id])
    per_epoch = [m.value for m in client.get_metric_history(run.info.run_id, "val_recall_at_50")]
    assert len(per_epoch) == 2
    # Validation under DDP (each process ranks half the users, ranks gathered) must equal the
    # single-process evaluation of the best checkpoint that the pipeline runs afterwards.
    report = json.loads((tmp_path / "artifacts/metrics.json").read_text())
    # (Lightning logs float32: 1e-6 still tells apart one user in 150, a 0.0067 step.)
    assert max(per_epoch) == pytest.approx(report["val"]["two_tower"]["recall@50"], abs=1e-6)
    assert len(list(tmp_path.glob("mlruns/mlflow.db"))) == 1
    assert len(client.search_runs([run.info.experiment_id])) == 1  # the worker logged no run of its own


# Test Recall@50 of the default config on ml-latest-small, seeds 0-4 (benchmarks/bench_tower_comparison.py
# --towers id --seeds 0,1,2,3,4; deterministic on CPU: seed 2 gave the same ranks in two runs, one on
# a busy and one on a quiet machine). Popularity's test Recall@50 is 0.1376 whatever the seed.
# (The configured seed 42: 0.2720.) Re-derived on 2026-11-30: the table recorded before, 0.2786,
# 0.2637, 0.2670, 0.2720, 0.2919, came from an earlier commit and no longer reproduced.
SEED_TEST_RECALL_AT_50 = {0: 0.2852, 1: 0.2836, 2: 0.2769, 3: 0.2637, 4: 0.2736}


def test_default_model_beats_the_bar_on_real_movielens(tmp_path, monkeypatch, small_movielens_zip):
    """The default config (one seed, the configured 42) clears floors set from the spread over seeds.

    Floors: mean - 3 sd over ``SEED_TEST_RECALL_AT_50``, never above the lowest seed:
    Recall@50 0.2766 - 3 x 0.0086 = 0.251; ratio to popularity 2.010 - 3 x 0.063 = 1.82 (per seed
    2.073, 2.061, 2.012, 1.916, 1.988). Below them a run is 3 sd out: a regression, not bad luck.
    """
    recall_floor, ratio_floor = quality_floors(SEED_TEST_RECALL_AT_50)
    assert 0.25 < recall_floor < 0.252 and 1.82 < ratio_floor < 1.83  # the docstring's derivation
    monkeypatch.chdir(tmp_path)
    settings = compose_settings(
        ["data=ml-latest-small", f"paths.raw_zip={small_movielens_zip}", "logging.enabled=false"]
    )
    train_pipeline.run(settings)
    report = json.loads((tmp_path / "artifacts/metrics.json").read_text())
    two_tower, popularity = (
        report["test"]["two_tower"]["recall@50"],
        report["test"]["popularity"]["recall@50"],
    )
    assert popularity == pytest.approx(POPULARITY_TEST_RECALL_AT_50, abs=1e-4)
    assert two_tower >= recall_floor
    assert two_tower >= ratio_floor * popularity
