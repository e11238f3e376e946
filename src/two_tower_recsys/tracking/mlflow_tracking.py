"""MLflow tracking: pick a reachable store, then log a training run's params, metrics and files.

The configured URI (default http://127.0.0.1:8080) is used when a server answers there; when
none does, the run goes to a local SQLite store inside the project (``logging.mlflow.fallback_uri``
names its folder) and the switch is announced: training never fails for want of a server.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from two_tower_recsys.settings import MlflowConfig

log = logging.getLogger(__name__)

# The tag that makes a run a child of another in MLflow's UI (mlflow.utils.mlflow_tags).
MLFLOW_PARENT_RUN_ID = "mlflow.parentRunId"


@dataclass(frozen=True)
class TrackingTarget:
    uri: str
    artifact_location: str | None  # set for the local fallback store
    is_fallback: bool


def resolve_tracking_target(config: MlflowConfig) -> TrackingTarget:
    uri = config.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return TrackingTarget(uri, None, is_fallback=False)
    try:
        requests.get(uri.rstrip("/") + "/health", timeout=config.connect_timeout_s).raise_for_status()
        return TrackingTarget(uri, None, is_fallback=False)
    except requests.RequestException as exc:
        store = Path(config.fallback_uri).absolute()
        store.mkdir(parents=True, exist_ok=True)
        fallback = TrackingTarget(f"sqlite:///{store / 'mlflow.db'}", (store / "artifacts").as_uri(), True)
        reason = type(exc).__name__
        message = (
            f"no MLflow server answers at {uri} ({reason}); logging to the local store {store} instead "
            f"(browse it with: mlflow ui --backend-store-uri {fallback.uri})"
        )
        log.warning(message)
        return fallback


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"embedding_dim": 64}} -> {"model.embedding_dim": 64}."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def git_commit(directory: Path | None = None) -> str:
    """The checked-out commit (with ``-dirty`` for local changes), or ``unknown`` outside git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


class TrainingRun:
    """One MLflow run: created up front, fed per-epoch metrics by Lightning's MLFlowLogger
    (same run id), then given final metrics, tags and files by the pipeline."""

    def __init__(
        self,
        target: TrackingTarget,
        experiment_name: str,
        run_name: str | None = None,
        resume_run_id: str | None = None,
        parent_run_id: str | None = None,
    ):
        """``resume_run_id``: reopen that run (a resumed training run) instead of creating one;
        ``parent_run_id``: create the run nested under that one (a tuning study's trial)."""
        from mlflow.tracking import MlflowClient

        self.target = target
        self.client = MlflowClient(tracking_uri=target.uri)
        if resume_run_id is not None:
            self.run_id = resume_run_id
            self.client.update_run(resume_run_id, status="RUNNING")
            log.info("MLflow run %s at %s (resumed)", self.run_id, target.uri)
            return
        experiment = self.client.get_experiment_by_name(experiment_name)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(experiment_name, artifact_location=target.artifact_location)
        )
        tags = {} if parent_run_id is None else {MLFLOW_PARENT_RUN_ID: parent_run_id}
        self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        log.info("MLflow run %s at %s", self.run_id, target.uri)

    def lightning_logger(self) -> Any:
        from lightning.pytorch.loggers import MLFlowLogger

        return MLFlowLogger(tracking_uri=self.target.uri, run_id=self.run_id, log_model=False)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(key, str(value)[:6000]) for key, value in flatten(params).items()]
        for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        # One request per batch (a run's final results are ~90 metrics), not one per metric;
        # MLflow splits batches above its own per-request limit itself.
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            metrics=[Metric(key, float(value), timestamp, step or 0) for key, value in metrics.items()],
        )

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_pyfunc_model(
        self, arguments: Mapping[str, Any], registered_model_name: str | None, name: str = "model"
    ) -> str | None:
        """``mlflow.pyfunc.log_model(**arguments)`` into this run, registered as a new version of
        ``registered_model_name`` (none when None); returns ``models:/<name>/<version>`` or None."""
        import mlflow

        previous_uri = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.target.uri)  # log_model logs to the active run only
        try:
            with mlflow.start_run(run_id=self.run_id):
                info = mlflow.pyfunc.log_model(
                    name=name, registered_model_name=registered_model_name, **arguments
                )
        finally:
            mlflow.set_tracking_uri(previous_uri)
        if registered_model_name is None:
            log.info("logged the pyfunc model to run %s (not registered)", self.run_id)
            return None
        uri = f"models:/{registered_model_name}/{info.registered_model_version}"
        log.info("registered the pyfunc model as %s at %s", uri, self.target.uri)
        return uri

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)
