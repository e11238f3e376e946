"""The run directory: what ``two-tower train trainer.resume=true`` continues from.

``<paths.artifacts_dir>/run/`` holds the current training run: ``last.ckpt`` (written after every
epoch), ``best.ckpt`` (best validation Recall@K so far), ``run.json`` (what the run trains on,
its MLflow run, whether it finished) and, with ``trainer.refit``, ``refit/last.ckpt`` of the refit
on train + validation (not resumed: a resumed run trains it again from its start). A fresh run
empties the directory; a resume checks that the data, the model and everything else that shapes
the trained weights are those the run started with.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from two_tower_recsys.errors import ConfigError
from two_tower_recsys.settings import AppConfig
from two_tower_recsys.tracking.mlflow_tracking import flatten
from two_tower_recsys.utils.fileio import atomic_write_json, read_json

log = logging.getLogger(__name__)

RUN_DIR, RUN_FILE, LAST_CHECKPOINT, REFIT_DIR = "run", "run.json", "last.ckpt", "refit"
# Trainer settings a resumed run must share with the interrupted one (the others, such as
# max_epochs, patience, devices or the progress bar, may change between the two).
_SHAPING_TRAINER_KEYS = (
    "max_interactions",
    "batch_size",
    "optimizer",
    "lr",
    "weight_decay",
    "ema_decay",
    "monitor_k",
)


@dataclass(frozen=True)
class RunStart:
    directory: Path
    resume_from: Path | None  # last.ckpt of the interrupted run, None for a fresh run
    mlflow_run_id: str | None = None  # the interrupted run's MLflow run
    mlflow_uri: str | None = None


def run_directory(settings: AppConfig) -> Path:
    return settings.paths.artifacts_dir.absolute() / RUN_DIR


def run_identity(settings: AppConfig, dataset_md5: str) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one, flattened to dotted keys."""
    identity = {
        "dataset_md5": dataset_md5,
        "seed": settings.seed,
        "data": dataclasses.asdict(settings.data),
        "model": dataclasses.asdict(settings.model),
        "trainer": {key: getattr(settings.trainer, key) for key in _SHAPING_TRAINER_KEYS},
    }
    return {key: _comparable(value) for key, value in flatten(identity).items()}


def _comparable(value: Any) -> Any:
    """JSON round-trip form: tuples become lists, paths strings."""
    if isinstance(value, tuple | list):
        return [_comparable(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _interrupted(directory: Path) -> tuple[dict[str, Any] | None, str]:
    """The unfinished run's record, or None and why there is nothing to resume."""
    record_path = directory / RUN_FILE
    if not record_path.exists():
        return None, f"no run in {directory}"
    record = read_json(record_path)
    if record.get("finished"):
        return None, f"the run in {directory} finished"
    if not (directory / LAST_CHECKPOINT).exists():
        return None, f"the run in {directory} ended before its first epoch did"
    return record, ""


def start_run(settings: AppConfig, dataset_md5: str) -> RunStart:
    """Resume the interrupted run (``trainer.resume=true``) or empty the directory for a fresh one."""
    directory = run_directory(settings)
    identity = run_identity(settings, dataset_md5)
    record, nothing_because = _interrupted(directory)
    if settings.trainer.resume:
        if record is not None:
            require_same_identity(
                record["identity"],
                identity,
                f"the run in {directory}",
                "start a fresh run with trainer.resume=false",
            )
            log.info("resuming the interrupted run in %s from %s", directory, LAST_CHECKPOINT)
            return RunStart(
                directory, directory / LAST_CHECKPOINT, record.get("mlflow_run_id"), record.get("mlflow_uri")
            )
        log.warning("trainer.resume=true: nothing to resume (%s); starting a fresh run", nothing_because)
    elif record is not None:
        log.warning(
            "starting a fresh run: discarding the interrupted run in %s (trainer.resume=true continues it)",
            directory,
        )
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    atomic_write_json(directory / RUN_FILE, {"identity": identity, "finished": False})
    return RunStart(directory, None)


def resume_point(settings: AppConfig) -> Path | None:
    """For a DDP worker: the checkpoint the global-zero process resumes from (it decided first)."""
    directory = run_directory(settings)
    record, _ = _interrupted(directory)
    return directory / LAST_CHECKPOINT if settings.trainer.resume and record is not None else None


def require_same_identity(saved: dict[str, Any], current: dict[str, Any], what: str, fresh_hint: str) -> None:
    """Refuse to continue ``what`` (a run, a study) with settings other than those it started with."""
    changed = [
        f"{key} was {saved.get(key)!r}, now {current.get(key)!r}"
        for key in sorted(saved.keys() | current.keys())
        if saved.get(key) != current.get(key)
    ]
    if changed:
        raise ConfigError(
            f"cannot resume {what}: {'; '.join(changed)} (resume with the same settings, or {fresh_hint})"
        )


def _update(directory: Path, **fields: Any) -> None:
    record = read_json(directory / RUN_FILE)
    atomic_write_json(directory / RUN_FILE, {**record, **fields})


def record_mlflow_run(directory: Path, run_id: str, uri: str) -> None:
    _update(directory, mlflow_run_id=run_id, mlflow_uri=uri)


def mark_finished(directory: Path) -> None:
    _update(directory, finished=True)
