"""Which run ``trainer.resume`` continues, and when it refuses."""

import logging

import pytest
from support import TINY_SYNTHETIC

from two_tower_recsys.errors import ConfigError
from two_tower_recsys.pipelines.hydra_edge import compose_settings
from two_tower_recsys.pipelines.run_directory import (
    mark_finished,
    record_mlflow_run,
    resume_point,
    start_run,
)


def settings(tmp_path, *overrides):
    return compose_settings([*TINY_SYNTHETIC, f"paths.artifacts_dir={tmp_path}/artifacts", *overrides])


def interrupted_run(tmp_path, *overrides):
    """A run that wrote its first epoch's last.ckpt, then died."""
    start = start_run(settings(tmp_path, *overrides), "md5-a")
    (start.directory / "last.ckpt").write_bytes(b"weights")
    record_mlflow_run(start.directory, "run-123", "http://127.0.0.1:5000")
    return start.directory


def test_resume_continues_the_interrupted_run_and_its_mlflow_run(tmp_path):
    directory = interrupted_run(tmp_path)
    resumed = start_run(settings(tmp_path, "trainer.resume=true", "trainer.max_epochs=9"), "md5-a")
    assert resumed.resume_from == directory / "last.ckpt"
    assert (resumed.mlflow_run_id, resumed.mlflow_uri) == ("run-123", "http://127.0.0.1:5000")
    assert resume_point(settings(tmp_path, "trainer.resume=true")) == directory / "last.ckpt"


@pytest.mark.parametrize(
    ("override", "md5", "named"),
    [
        ("model.embedding_dim=32", "md5-a", "model.embedding_dim was 64, now 32"),
        ("trainer.batch_size=256", "md5-a", "trainer.batch_size was 512, now 256"),
        ("seed=7", "md5-a", "seed was 42, now 7"),
        ("trainer.max_epochs=2", "md5-b", "dataset_md5 was 'md5-a', now 'md5-b'"),
    ],
)
def test_resume_refuses_a_run_with_other_data_model_or_seed(tmp_path, override, md5, named):
    directory = interrupted_run(tmp_path)
    with pytest.raises(ConfigError, match="cannot resume the run in") as error:
        start_run(settings(tmp_path, "trainer.resume=true", override), md5)
    assert named in str(error.value) and "\n" not in str(error.value)
    assert (directory / "last.ckpt").exists()  # nothing was thrown away


def test_resume_with_nothing_to_resume_starts_fresh_and_says_so(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    fresh = start_run(settings(tmp_path, "trainer.resume=true"), "md5-a")
    assert fresh.resume_from is None and "nothing to resume (no run in" in caplog.text

    directory = interrupted_run(tmp_path)
    mark_finished(directory)
    fresh = start_run(settings(tmp_path, "trainer.resume=true"), "md5-a")
    assert fresh.resume_from is None and "finished); starting a fresh run" in caplog.text
    assert not (directory / "last.ckpt").exists()


def test_a_fresh_run_discards_the_interrupted_one_and_says_how_to_keep_it(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    directory = interrupted_run(tmp_path)
    fresh = start_run(settings(tmp_path), "md5-a")
    assert fresh.resume_from is None and fresh.mlflow_run_id is None
    assert not (directory / "last.ckpt").exists()
    assert "trainer.resume=true continues it" in caplog.text
    assert resume_point(settings(tmp_path, "trainer.resume=true")) is None
