"""trainer.ema_decay: Lightning updates the moving average, validation scores it, checkpoints keep it."""

import dataclasses
import functools

import pytest
import torch
from support import TINY_SYNTHETIC

from two_tower_recsys.evaluation.evaluator import compute_ranks, evaluation_task
from two_tower_recsys.evaluation.metrics import summarize
from two_tower_recsys.pipelines.hydra_edge import compose_settings
from two_tower_recsys.preprocessing.prepare import prepare_dataset
from two_tower_recsys.preprocessing.split import VAL
from two_tower_recsys.settings import ConfigError
from two_tower_recsys.training.checkpoint import read_checkpoint
from two_tower_recsys.training.fit import fit_two_tower


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("tiny-ema")
    settings = compose_settings(
        [
            *TINY_SYNTHETIC,
            f"paths.raw_zip={scratch}/raw.zip",
            f"paths.processed_dir={scratch}/processed",
            "trainer.max_epochs=4",
            "trainer.max_interactions=1000",
            "trainer.batch_size=250",
            "trainer.early_stopping_patience=10",
            "trainer.ema_decay=0.9",
        ]
    )
    return settings, prepare_dataset(settings.data, settings.paths, progress=False)


def fit_with(tiny, checkpoint_dir, **trainer_changes):
    settings, dataset = tiny
    return fit_two_tower(
        dataset,
        model_cfg=settings.model,
        trainer_cfg=dataclasses.replace(settings.trainer, **trainer_changes),
        eval_cfg=settings.eval,
        seed=0,
        checkpoint_dir=checkpoint_dir,
    )


def test_validation_scores_the_average_and_the_best_checkpoint_keeps_it(tiny, tmp_path):
    settings, dataset = tiny
    fit = fit_with(tiny, tmp_path)
    checkpoint = read_checkpoint(tmp_path / "best.ckpt")
    average, current = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert average.keys() == current.keys()
    assert any(not torch.equal(average[name], current[name]) for name in average)  # two sets of weights

    # The loaded model (the checkpoint's state_dict: the average) scores exactly what validation
    # recorded for the best epoch, so validation scored the average, not the raw weights.
    ranks = compute_ranks(fit.module.scorer(), evaluation_task(dataset, VAL), batch_size=64, progress=False)
    best = next(record for record in fit.history if record.epoch == fit.best_epoch)
    rescored = summarize(ranks, (settings.trainer.monitor_k,), ())
    monitor = f"recall@{settings.trainer.monitor_k}"
    assert rescored[monitor] == pytest.approx(best.metrics[monitor], abs=1e-12)


def test_a_resumed_fit_continues_the_average_exactly(tiny, tmp_path):
    whole = fit_with(tiny, tmp_path / "whole")
    fit_with(tiny, tmp_path / "split", max_epochs=2)
    resume = functools.partial(fit_two_tower, resume_from=tmp_path / "split" / "last.ckpt")
    settings, dataset = tiny
    resumed = resume(
        dataset,
        model_cfg=settings.model,
        trainer_cfg=settings.trainer,
        eval_cfg=settings.eval,
        seed=0,
        checkpoint_dir=tmp_path / "split",
    )
    assert [record.metrics for record in resumed.history] == [record.metrics for record in whole.history]
    for name, tensor in whole.module.state_dict().items():
        assert torch.equal(tensor, resumed.module.state_dict()[name]), name


def test_without_a_decay_no_average_is_kept(tiny, tmp_path):
    fit_with(tiny, tmp_path, ema_decay=0.0, max_epochs=1)
    assert "current_model_state" not in read_checkpoint(tmp_path / "best.ckpt")


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5])
def test_a_decay_outside_zero_to_one_is_a_one_line_error(decay):
    with pytest.raises(ConfigError, match="trainer.ema_decay must be in"):
        compose_settings([f"trainer.ema_decay={decay}"])
