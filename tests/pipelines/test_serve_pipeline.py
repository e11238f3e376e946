"""`two-tower serve`: the checks before it starts (one line, exit 2), and the real server it starts."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest
import requests
from answers import assert_same_answers
from random_index import write_random_index
from support import VENV_BIN, free_port, running_server

from two_tower_recsys.inference.packaging import package_model
from two_tower_recsys.inference.recommender import Recommender
from two_tower_recsys.pipelines import serve_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings, report_user_errors
from two_tower_recsys.settings import InferConfig


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A trained-index stand-in and its package at the default place under it."""
    directory = tmp_path_factory.mktemp("serve") / "artifacts"
    write_random_index(directory, n_users=50, n_items=80, dim=8, mean_positives=5, seed=1)
    package_model(directory, directory / "mlflow_model", InferConfig())
    return directory


def serve_error(overrides: list[str], capsys) -> str:
    """Run the command's checks; it must stop before starting a server, with one line."""
    status = report_user_errors(lambda: serve_pipeline.run(compose_settings(overrides)))
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    return captured.err.strip()


def test_a_missing_package_is_one_line(tmp_path, capsys):
    message = serve_error([f"paths.artifacts_dir={tmp_path}"], capsys)
    assert message.startswith(f"error: no MLflow model at {tmp_path}/mlflow_model")
    assert "two-tower package-mlflow" in message


def test_a_taken_port_is_one_line(artifacts, capsys):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        message = serve_error([f"paths.artifacts_dir={artifacts}", f"serve.port={port}"], capsys)
    assert message == (
        f"error: port {port} on 127.0.0.1 is already in use; stop what listens there or pick another "
        "with serve.port=<port>"
    )


def test_a_stale_or_damaged_package_is_one_line(artifacts, tmp_path, capsys):
    root = tmp_path / "artifacts"
    shutil.copytree(artifacts, root)
    write_random_index(root, n_users=50, n_items=80, dim=8, mean_positives=5, seed=2)  # retrained
    message = serve_error([f"paths.artifacts_dir={root}"], capsys)
    assert message.startswith(f"error: {root}/mlflow_model was built from another index")
    assert "two-tower package-mlflow" in message
    # Another package, named explicitly, is not compared with the index of paths.artifacts_dir...
    other = tmp_path / "other_model"
    shutil.copytree(root / "mlflow_model", other)
    with (other / "artifacts/index/popularity.npy").open("ab") as damaged:  # ...but is verified
        damaged.write(b"\0")
    message = serve_error([f"paths.artifacts_dir={root}", f"serve.model={other}"], capsys)
    assert message.startswith(f"error: the package at {other} is damaged")


def test_a_models_uri_is_fetched_from_the_registry(artifacts, tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient
    from mlflow.tracking._tracking_service import utils as tracking_utils

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # The command sets MLflow's tracking URI (it then becomes the server); restore it afterwards.
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # unset for the command, restored afterwards
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.create_registered_model("recommender")
    client.create_model_version("recommender", source=str(artifacts / "mlflow_model"))
    package = serve_pipeline.resolve_model("models:/recommender/1", tracking_uri)
    assert serve_pipeline.check_package(package, None)["n_users"] == 50
    overrides = [f"logging.mlflow.tracking_uri={tracking_uri}", "serve.model=models:/recommender/2"]
    settings = compose_settings([f"paths.artifacts_dir={artifacts}", *overrides])
    assert report_user_errors(lambda: serve_pipeline.run(settings)) == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]  # after MLflow's own log lines
    assert last_line == (
        "error: cannot fetch serve.model=models:/recommender/2: Model Version (name=recommender, "
        "version=2) not found"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("serve.port=0", "error: serve.port must be between 1 and 65535, got 0"),
        ("serve.workers=0", "error: serve.workers must be positive, got 0"),
        ("serve.host=no-such-host.invalid", "error: serve.host=no-such-host.invalid cannot be resolved"),
    ],
)
def test_bad_settings_are_one_line(artifacts, override, message, capsys):
    assert serve_error([f"paths.artifacts_dir={artifacts}", override], capsys).startswith(message)


def test_the_server_gets_mlflows_environment_and_one_torch_thread(artifacts, monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    settings = compose_settings([f"paths.artifacts_dir={artifacts}", "serve.workers=3"])
    argv, env = serve_pipeline.server_command(artifacts / "mlflow_model", settings.serve)
    assert argv[1] == str(serve_pipeline.LAUNCHER) and argv[-2:] == ["--factory", "two_tower_asgi:create_app"]
    assert argv[argv.index("--workers") + 1] == "3" and argv[argv.index("--port") + 1] == "5000"
    assert env["__pyfunc_model_path__"] == (artifacts / "mlflow_model").resolve().as_uri()
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["MALLOC_ARENA_MAX"] == "2"


def test_a_malloc_arena_limit_the_user_set_is_kept(artifacts, monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    settings = compose_settings([f"paths.artifacts_dir={artifacts}"])
    _, env = serve_pipeline.server_command(artifacts / "mlflow_model", settings.serve)
    assert env["MALLOC_ARENA_MAX"] == "4"


@pytest.mark.slow
def test_two_tower_serve_answers_from_anywhere_without_the_venv_on_path(artifacts, tmp_path):
    """A user's shell: another directory, PATH without the virtualenv, default package location."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    command = [str(VENV_BIN / "two-tower"), "serve", f"paths.artifacts_dir={artifacts}", f"serve.port={port}"]
    with running_server(command, tmp_path, f"{url}/ping", env=env) as server:
        body = {"dataframe_split": {"columns": ["user_id", "k"], "data": [[3, 5], [999, 2]]}}
        response = requests.post(f"{url}/invocations", json=body, timeout=30)
        assert response.status_code == 200, response.text[:500]
        core = Recommender.from_artifacts(artifacts)
        assert_same_answers(response.json()["predictions"], core.recommend([3, 999], [5, 2]))
        # A second server on the same port: one line, exit 2, while the first keeps serving.
        second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"error: port {port} on 127.0.0.1 is already in use; stop what listens there or pick "
            "another with serve.port=<port>"
        ]
        assert server.poll() is None
        assert requests.get(f"{url}/ping", timeout=10).status_code == 200
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log
