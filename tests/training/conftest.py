"""The tiny synthetic dataset the training tests fit on, prepared once per module."""

import dataclasses

import pytest
from support import TINY_FIT_MAX_PAIRS, TINY_SYNTHETIC

from two_tower_recsys.pipelines.hydra_edge import compose_settings
from two_tower_recsys.preprocessing.prepare import prepare_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(settings, dataset): 4 epochs of TINY_FIT_MAX_PAIRS pairs, batches of 250, no early stop."""
    scratch = tmp_path_factory.mktemp("tiny")
    settings = compose_settings(
        [
            *TINY_SYNTHETIC,
            f"paths.raw_zip={scratch}/raw.zip",
            f"paths.processed_dir={scratch}/processed",
            "trainer.max_epochs=4",
            f"trainer.max_interactions={TINY_FIT_MAX_PAIRS}",
            "trainer.batch_size=250",
            "trainer.early_stopping_patience=10",
        ]
    )
    return settings, prepare_dataset(settings.data, settings.paths, progress=False)


@pytest.fixture
def fit_three_batches(tiny, tmp_path):
    """``fit(model_cfg, callback, **trainer_changes)``: one epoch of 3 batches through fit_two_tower."""
    from two_tower_recsys.training.fit import fit_two_tower

    settings, dataset = tiny

    def fit(model_cfg, callback, **trainer_changes) -> None:
        trainer = dataclasses.replace(
            settings.trainer, max_epochs=1, limit_train_batches=3, **trainer_changes
        )
        fit_two_tower(
            dataset,
            model_cfg=model_cfg,
            trainer_cfg=trainer,
            eval_cfg=settings.eval,
            seed=0,
            checkpoint_dir=tmp_path / "checkpoints",
            callbacks=[callback],
        )

    return fit
