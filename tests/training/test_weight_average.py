"""trainer.ema_decay: Lightning updates the moving average, validation scores it, checkpoints keep it."""

import dataclasses

import pytest
import torch

from two_tower_recsys.evaluation.evaluator import compute_ranks, evaluation_task
from two_tower_recsys.evaluation.metrics import summarize
from two_tower_recsys.pipelines.hydra_edge import compose_settings
from two_tower_recsys.preprocessing.split import VAL
from two_tower_recsys.settings import ConfigError
from two_tower_recsys.training.checkpoint import read_checkpoint
from two_tower_recsys.training.fit import fit_two_tower


def fit_with(tiny, checkpoint_dir, resume_from=None, **trainer_changes):
    """A fit of the tiny fixture (conftest.py) with a moving average of decay 0.9 unless changed."""
    settings, dataset = tiny
    return fit_two_tower(
        dataset,
        model_cfg=settings.model,
        trainer_cfg=dataclasses.replace(settings.trainer, **{"ema_decay": 0.9, **trainer_changes}),
        eval_cfg=settings.eval,
        seed=0,
        checkpoint_dir=checkpoint_dir,
        resume_from=resume_from,
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
    resumed = fit_with(tiny, tmp_path / "split", resume_from=tmp_path / "split" / "last.ckpt")
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
