"""``two-tower train trainer.resume=true`` after a SIGKILL in the middle of an epoch."""

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from mlflow.tracking import MlflowClient
from support import VENV_BIN, run_cli

from two_tower_recsys.artifacts.store import load_index

pytestmark = pytest.mark.slow

# Epochs of a few seconds (many small batches), long enough to be killed in the middle of one.
RUN = [
    "data=synthetic",
    "data.synthetic.users=300",
    "data.synthetic.movies=200",
    "data.synthetic.ratings=20000",
    "data.synthetic.clusters=4",
    "trainer.max_epochs=4",
    "trainer.early_stopping_patience=2",
    "trainer.batch_size=128",
    "trainer.progress_bar=false",
]


def last_checkpoint_epoch(run_dir) -> int:
    return torch.load(run_dir / "last.ckpt", map_location="cpu", weights_only=True)["epoch"]


def kill_during_second_epoch(args: list[str], cwd) -> None:
    """Start `two-tower train`, wait for the first epoch's last.ckpt, SIGKILL it while epoch 2 runs."""
    last = cwd / "artifacts/run/last.ckpt"
    process = subprocess.Popen(
        [str(VENV_BIN / "two-tower"), "train", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        while not last.exists():
            assert process.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)  # into the next epoch's batches
        assert process.poll() is None, "training ended before it could be interrupted"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def results(directory):
    report = json.loads((directory / "artifacts/metrics.json").read_text())
    index = load_index(directory / "artifacts")
    return report, index


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result_in_the_same_mlflow_run(
    tmp_path, mlflow_server
):
    reference_dir, interrupted_dir = tmp_path / "reference", tmp_path / "interrupted"
    reference_dir.mkdir()
    interrupted_dir.mkdir()
    logging = [f"logging.mlflow.tracking_uri={mlflow_server}"]
    # The uninterrupted reference trains in its own process alongside the interrupted run and its
    # resumption (each run is deterministic whatever else the machine does): one run's wall time less.
    with ThreadPoolExecutor(1) as background:
        reference_run = background.submit(
            run_cli, ["train", *RUN, *logging, "logging.mlflow.experiment_name=reference"], reference_dir
        )
        args = [*RUN, *logging, "logging.mlflow.experiment_name=interrupted"]
        kill_during_second_epoch(args, interrupted_dir)
        run_dir = interrupted_dir / "artifacts/run"
        record = json.loads((run_dir / "run.json").read_text())
        assert not record["finished"] and record["mlflow_run_id"]
        assert last_checkpoint_epoch(run_dir) < 3  # the run was cut short
        assert not (interrupted_dir / "artifacts/manifest.json").exists()

        resumed = run_cli(["train", *args, "trainer.resume=true"], interrupted_dir)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "resuming the interrupted run" in resumed.stderr
        reference = reference_run.result()
    assert reference.returncode == 0, reference.stderr[-3000:]

    (expected_report, expected_index), (report, index) = results(reference_dir), results(interrupted_dir)
    assert report["test"]["two_tower"] == expected_report["test"]["two_tower"]
    assert report["val"]["two_tower"] == expected_report["val"]["two_tower"]
    assert index.manifest["best_epoch"] == expected_index.manifest["best_epoch"]
    assert torch.equal(index.item_embeddings, expected_index.item_embeddings)
    assert json.loads((run_dir / "run.json").read_text())["finished"]
    assert {path.name for path in run_dir.iterdir()} == {"best.ckpt", "last.ckpt", "run.json"}

    client = MlflowClient(tracking_uri=mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name("interrupted").experiment_id])
    assert run.info.run_id == record["mlflow_run_id"] and run.info.status == "FINISHED"
    (reference_run,) = client.search_runs([client.get_experiment_by_name("reference").experiment_id])

    def validation_curve(run_id):
        return {m.step: m.value for m in client.get_metric_history(run_id, "val_recall_at_50")}

    # Every epoch's validation, before and after the kill, in the one run, as in the reference.
    assert validation_curve(run.info.run_id) == validation_curve(reference_run.info.run_id)
    assert run.data.metrics["test_two_tower_recall_at_50"] == pytest.approx(
        reference_run.data.metrics["test_two_tower_recall_at_50"]
    )
