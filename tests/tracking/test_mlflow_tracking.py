"""Training registers its pyfunc model in a real MLflow server's Model Registry; the versions serve."""

import os
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pytest
import requests
import yaml
from mlflow.tracking import MlflowClient
from support import TINY_SYNTHETIC, VENV_BIN, free_port, running_server

from two_tower_recsys.artifacts.store import index_id, verified_manifest
from two_tower_recsys.inference.onnx_export import export_from_artifacts, scoring_session
from two_tower_recsys.inference.recommender import Recommender
from two_tower_recsys.pipelines import train_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings

pytestmark = pytest.mark.slow

USERS = [1, 2, 3, 10**9]  # the last one is unknown: the popularity fallback
K = 5


def core_answers(artifacts) -> list[dict]:
    core = Recommender.from_artifacts(artifacts)
    return [answer.as_dict() for answer in core.recommend(np.array(USERS), np.full(len(USERS), K))]


def movies(answers: list[dict]) -> list[list[int]]:
    return [[row[0] for row in answer["recommendations"]] for answer in answers]


def assert_same_answers(got: list[dict], expected: list[dict]) -> None:
    """Same users, movies, titles and flags; scores equal up to float32 rounding."""
    assert [{**a, "recommendations": None} for a in got] == [{**a, "recommendations": None} for a in expected]
    assert movies(got) == movies(expected)
    for answer, reference in zip(got, expected, strict=True):
        assert [row[2] for row in answer["recommendations"]] == [
            row[2] for row in reference["recommendations"]
        ]
        assert [row[1] for row in answer["recommendations"]] == pytest.approx(
            [row[1] for row in reference["recommendations"]], rel=1e-5
        )


def predict(model) -> list[dict]:
    return model.predict({"user_id": USERS, "k": [K] * len(USERS)})


def test_each_training_run_registers_a_version_that_loads_and_serves_like_the_core(
    tmp_path, monkeypatch, mlflow_server
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    overrides = [*TINY_SYNTHETIC, f"logging.mlflow.tracking_uri={mlflow_server}"]
    train_pipeline.run(compose_settings(overrides))
    first = core_answers(tmp_path / "artifacts")

    assert_same_answers(predict(mlflow.pyfunc.load_model("models:/two-tower/latest")), first)
    client = MlflowClient(tracking_uri=mlflow_server)
    (version,) = client.search_model_versions("name='two-tower'")
    assert version.version == "1"
    config_path = client.download_artifacts(version.run_id, "config.yaml", str(tmp_path))
    config = yaml.safe_load(Path(config_path).read_text())
    assert config["data"]["name"] == "synthetic" and config["seed"] == 42

    # Retrain with another seed: a second version, the package and the ONNX export follow the index.
    export_from_artifacts(tmp_path / "artifacts", tmp_path / "artifacts/model_scoring.onnx")
    train_pipeline.run(compose_settings([*overrides, "seed=7"]))
    second = core_answers(tmp_path / "artifacts")
    assert movies(second) != movies(first)
    assert client.get_registered_model("two-tower").latest_versions[0].version == "2"
    assert_same_answers(predict(mlflow.pyfunc.load_model("models:/two-tower/latest")), second)
    current = index_id(verified_manifest(tmp_path / "artifacts"))
    mlmodel = yaml.safe_load((tmp_path / "artifacts/mlflow_model/MLmodel").read_text())
    assert mlmodel["metadata"]["two_tower_recsys"]["index_id"] == current
    assert_same_answers(predict(mlflow.pyfunc.load_model(str(tmp_path / "artifacts/mlflow_model"))), second)
    scoring_session(tmp_path / "artifacts/model_scoring.onnx", tmp_path / "artifacts")  # re-exported

    # `mlflow models serve` pulls version 1 from the registry: the first run's answers, not the latest.
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_server,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # uvicorn
    }
    command = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", "models:/two-tower/1"]
    command += ["-p", str(port), "--host", "127.0.0.1", "--env-manager", "local"]
    serve_dir = tmp_path / "serve"
    serve_dir.mkdir()
    url = f"http://127.0.0.1:{port}"
    with running_server(command, serve_dir, f"{url}/ping", env=env):
        body = {"dataframe_split": {"columns": ["user_id", "k"], "data": [[user, K] for user in USERS]}}
        response = requests.post(f"{url}/invocations", json=body, timeout=60)
    assert response.status_code == 200, response.text[-2000:]
    assert_same_answers(response.json()["predictions"], first)


def test_a_null_registered_model_name_logs_the_model_without_registering(
    tmp_path, monkeypatch, mlflow_server
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    train_pipeline.run(
        compose_settings(
            [
                *TINY_SYNTHETIC,
                "trainer.max_epochs=1",
                f"logging.mlflow.tracking_uri={mlflow_server}",
                "logging.mlflow.registered_model_name=null",
            ]
        )
    )
    client = MlflowClient(tracking_uri=mlflow_server)
    assert client.search_registered_models() == []
    (run,) = client.search_runs([client.get_experiment_by_name("two-tower-recsys").experiment_id])
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert model.predict({"user_id": [1], "k": [2]})[0]["k"] == 2
