"""Checkpoints written by a real Lightning Trainer read back safely and across config changes."""

import logging
import os

import lightning as L
import numpy as np
import pytest
import torch

from two_tower_recsys.errors import ArtifactError
from two_tower_recsys.settings import ModelConfig, TrainerConfig
from two_tower_recsys.training.checkpoint import load_two_tower_checkpoint
from two_tower_recsys.training.module import TwoTowerModule
from two_tower_recsys.training.pairs import epoch_pairs_loader

N_USERS, N_ITEMS = 20, 30


@pytest.fixture(scope="module")
def lightning_checkpoint(tmp_path_factory):
    """A checkpoint as Lightning writes it (optimizer, loops and callback state included)."""
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, N_USERS, 200), rng.integers(0, N_ITEMS, 200)
    module = TwoTowerModule.from_settings(
        N_USERS, N_ITEMS, ModelConfig(embedding_dim=8), TrainerConfig(), np.bincount(items, minlength=N_ITEMS)
    )
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, epoch_pairs_loader(users, items, max_pairs=200, batch_size=50, seed=0))
    path = tmp_path_factory.mktemp("checkpoint") / "model.ckpt"
    trainer.save_checkpoint(path)
    return path, module.net.user_tower.embed_all().detach().clone()


def rewritten(source, destination, change):
    checkpoint = torch.load(source, weights_only=True)
    change(checkpoint["hyper_parameters"])
    torch.save(checkpoint, destination)
    return destination


def test_a_trained_checkpoint_loads_its_weights(lightning_checkpoint):
    path, user_embeddings = lightning_checkpoint
    module = load_two_tower_checkpoint(path)
    assert module.model_config.embedding_dim == 8
    assert torch.equal(module.net.user_tower.embed_all(), user_embeddings)
    assert not module.training


def test_settings_missing_from_an_older_checkpoint_take_their_defaults(lightning_checkpoint, tmp_path):
    path, user_embeddings = lightning_checkpoint

    def forget_newer_keys(hparams):
        del hparams["model"]["l2_reg"], hparams["model"]["init_std"]
        del hparams["optimizer"]["monitor_k"]

    module = load_two_tower_checkpoint(rewritten(path, tmp_path / "older.ckpt", forget_newer_keys))
    assert module.model_config.l2_reg == ModelConfig().l2_reg
    assert module.optimizer_config.monitor_k == TrainerConfig().monitor_k
    assert torch.equal(module.net.user_tower.embed_all(), user_embeddings)


def test_settings_no_longer_known_are_ignored_with_a_warning(lightning_checkpoint, tmp_path, caplog):
    path, user_embeddings = lightning_checkpoint

    def add_obsolete_keys(hparams):
        hparams["model"]["tower_layers"] = 3
        hparams["optimizer"]["gradient_clip"] = 1.0

    with caplog.at_level(logging.WARNING):
        module = load_two_tower_checkpoint(rewritten(path, tmp_path / "newer.ckpt", add_obsolete_keys))
    assert torch.equal(module.net.user_tower.embed_all(), user_embeddings)
    warnings = " ".join(record.getMessage() for record in caplog.records)
    assert "tower_layers" in warnings and "gradient_clip" in warnings


class _Payload:
    """Unpickling this runs os.system: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_with_a_pickled_object_is_refused_not_executed(lightning_checkpoint, tmp_path):
    path, _ = lightning_checkpoint
    marker = tmp_path / "executed"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["callbacks"] = {"surprise": _Payload(marker)}
    torch.save(checkpoint, tmp_path / "sent-to-you.ckpt")
    with pytest.raises(ArtifactError, match="refusing to load it") as error:
        load_two_tower_checkpoint(tmp_path / "sent-to-you.ckpt")
    assert "system" in str(error.value) and "\n" not in str(error.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not a checkpoint", "not a readable checkpoint"), (None, "does not exist")],
)
def test_unreadable_checkpoints_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "model.ckpt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ArtifactError, match=message) as error:
        load_two_tower_checkpoint(path)
    assert "\n" not in str(error.value)


def test_weights_that_do_not_fit_the_saved_settings_are_refused(lightning_checkpoint, tmp_path):
    path, _ = lightning_checkpoint
    changed = rewritten(path, tmp_path / "odd.ckpt", lambda hparams: hparams["model"].update(embedding_dim=4))
    with pytest.raises(ArtifactError, match="weights do not fit"):
        load_two_tower_checkpoint(changed)
