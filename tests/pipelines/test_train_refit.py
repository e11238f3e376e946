"""``two-tower train trainer.refit=true``: the epoch is chosen on validation, then a fresh model trained
on train + validation for that many epochs is tested and published."""

import json
import shutil

import pytest
import torch
from mlflow.tracking import MlflowClient
from support import TINY_SYNTHETIC, run_cli, scratch_paths

from two_tower_recsys.evaluation.report import format_table
from two_tower_recsys.pipelines import train_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings
from two_tower_recsys.training.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow  # the whole train pipeline, twice

REFIT = [
    *TINY_SYNTHETIC,
    "trainer.max_epochs=3",
    "eval.bootstrap_resamples=50",
    "trainer.refit=true",
    "logging.mlflow.registered_model_name=null",
]


TRACKING = "sqlite:///mlflow.db"  # in the run's working directory


def report_of(root):
    return json.loads((root / "artifacts/metrics.json").read_text())


def weights(path):
    return read_checkpoint(path)["state_dict"]


def same_weights(first, second) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)


@pytest.fixture(scope="module")
def refitted(tmp_path_factory):
    """The root of a finished run with trainer.refit=true (data, artifacts and run directory)."""
    root = tmp_path_factory.mktemp("refit")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # MLflow's artifacts of a sqlite store go below the working directory
        train_pipeline.run(
            compose_settings([*REFIT, *scratch_paths(root), f"logging.mlflow.tracking_uri={TRACKING}"])
        )
    return root


def selection_history(run_dir) -> list[dict]:
    """The selection fit's per-epoch validation, as its validation callback saved it."""
    states = read_checkpoint(run_dir / "last.ckpt")["callbacks"].values()
    (history,) = [state["history"] for state in states if "history" in state]
    return history


def test_the_refit_trains_on_validation_for_the_best_epochs_and_is_what_is_tested_and_published(refitted):
    report, run_dir = report_of(refitted), refitted / "artifacts/run"
    history = selection_history(run_dir)
    best = max(history, key=lambda record: record["metrics"]["recall@50"])
    # The tiny data peak before the last epoch: the refit's length is the best's, not max_epochs.
    assert best["epoch"] < len(history) - 1
    dataset = report["dataset"]
    assert report["refit"]["two_tower"] == {
        "fitted_on": "train+val",
        "train_rows": dataset["train_rows"] + dataset["val_rows"],
        "epochs": best["epoch"] + 1,
    }
    # Validation figures are the selection fit's best epoch (float32 logging aside: 1e-6 is far
    # below one user's 1/150).
    assert report["val"]["two_tower"]["recall@50"] == pytest.approx(best["metrics"]["recall@50"], abs=1e-6)
    refit = read_checkpoint(run_dir / "refit/last.ckpt")
    assert refit["epoch"] == best["epoch"]  # its last epoch (from 0) is the selection's best
    assert not (run_dir / "refit/best.ckpt").exists()  # nothing chosen on contaminated validation
    published = weights(refitted / "artifacts/model.ckpt")
    assert same_weights(published, refit["state_dict"])
    assert not same_weights(published, weights(run_dir / "best.ckpt"))  # not the selection model
    manifest = json.loads((refitted / "artifacts/manifest.json").read_text())
    assert manifest["refit"] == report["refit"]["two_tower"]
    # The baselines refit alike (popularity reads each split's history anyway).
    assert set(report["refit"]) == {"two_tower", "ease", "als"}
    epochs = report["refit"]["two_tower"]["epochs"]
    refitted_models = f"test after a refit on train + validation: ease, als, two_tower ({epochs} epochs)"
    assert refitted_models in format_table(report)
    assert report["refit"]["ease"] == {
        "fitted_on": "train+val",
        "train_rows": report["refit"]["two_tower"]["train_rows"],
    }


def test_a_run_resumed_after_an_interrupted_refit_trains_the_refit_again_to_the_same_result(
    refitted, tmp_path
):
    """The state a kill during the refit leaves: the selection fit's checkpoints, a run not marked
    finished, and a partial refit directory (here a stale checkpoint that must not be resumed)."""
    shutil.copytree(refitted / "raw", tmp_path / "raw")
    shutil.copytree(refitted / "processed", tmp_path / "processed")
    shutil.copytree(refitted / "artifacts/run", tmp_path / "artifacts/run")
    run_dir = tmp_path / "artifacts/run"
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**record, "finished": False}))
    shutil.copyfile(run_dir / "best.ckpt", run_dir / "refit/last.ckpt")  # trained on train only

    train_pipeline.run(
        compose_settings([*REFIT, *scratch_paths(tmp_path), "trainer.resume=true", "logging.enabled=false"])
    )

    expected, report = report_of(refitted), report_of(tmp_path)
    for split in ("val", "test"):
        assert report[split]["two_tower"] == expected[split]["two_tower"]
    assert report["refit"] == expected["refit"]
    assert same_weights(
        weights(tmp_path / "artifacts/model.ckpt"), weights(refitted / "artifacts/model.ckpt")
    )
    assert json.loads((run_dir / "run.json").read_text())["finished"]


def test_mlflow_records_the_refit_and_only_the_selection_fits_learning_curve(refitted):
    client = MlflowClient(tracking_uri=f"sqlite:///{refitted / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("two-tower-recsys").experiment_id])
    report = report_of(refitted)
    assert run.data.params["trainer.refit"] == "True"
    assert run.data.metrics["two_tower_refit_epochs"] == report["refit"]["two_tower"]["epochs"]
    assert run.data.metrics["test_two_tower_recall_at_50"] == pytest.approx(
        report["test"]["two_tower"]["recall@50"]
    )
    # One point per epoch of the selection fit: the refit logs no curve of its own.
    epochs = len(selection_history(refitted / "artifacts/run"))
    assert len(client.get_metric_history(run.info.run_id, "val_recall_at_50")) == epochs
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == epochs


def test_the_refit_runs_under_ddp_on_two_cpu_processes(tmp_path):
    """Both fits under DDP (gloo): the worker process takes part in the refit too, else rank 0 would
    wait for it forever; the refit's length and what is published are as in one process."""
    result = run_cli(
        [
            "train",
            *REFIT,
            "trainer.strategy=ddp",
            "trainer.devices=2",
            f"logging.mlflow.tracking_uri={TRACKING}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stderr, result.stderr[-3000:]  # a second process trained
    run_dir = tmp_path / "artifacts/run"
    history = selection_history(run_dir)
    best = max(history, key=lambda record: record["metrics"]["recall@50"])
    report = report_of(tmp_path)
    epochs = best["epoch"] + 1
    assert report["refit"]["two_tower"]["epochs"] == epochs
    # Each process logs its own refit (the process group of the selection fit is reused).
    assert result.stderr.count(f"refitting on train + validation for {epochs} epochs") == 2
    assert result.stderr.count(f"trained {epochs} epochs without validation") == 2
    refit = read_checkpoint(run_dir / "refit/last.ckpt")
    assert refit["epoch"] == best["epoch"]
    assert same_weights(weights(tmp_path / "artifacts/model.ckpt"), refit["state_dict"])
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("two-tower-recsys").experiment_id])
    assert run.data.metrics["two_tower_refit_epochs"] == epochs
