"""The user-encoder interface is what the rest of the code asks: every registered kind satisfies it,
and a third kind defined here, registered and nothing else, is trained by a real Lightning Trainer
through ``fit_two_tower``, scored split by split by the evaluator (``two-tower evaluate`` included),
published in the index, loaded back and asked for a fresh history's recommendations."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

import lightning as L
import pytest
import torch
from support import TINY_FIT_MAX_PAIRS, TINY_SYNTHETIC
from torch import nn

from two_tower_recsys import settings as settings_module
from two_tower_recsys.artifacts.store import load_index
from two_tower_recsys.evaluation.report import METRICS_FILE
from two_tower_recsys.inference.recommender import Recommender
from two_tower_recsys.models.components.towers import IdEmbeddingTower
from two_tower_recsys.models.components.user_encoders import USER_ENCODERS, build_user_encoder
from two_tower_recsys.pipelines import evaluate_pipeline
from two_tower_recsys.pipelines.evaluation_suite import evaluate_on_splits, evaluation_tasks
from two_tower_recsys.pipelines.hydra_edge import compose_settings
from two_tower_recsys.pipelines.train_pipeline import publish_index
from two_tower_recsys.pipelines.trained_scorers import published_scorer, split_scorers
from two_tower_recsys.preprocessing.histories import SERVING, histories_for
from two_tower_recsys.preprocessing.prepare import prepare_dataset
from two_tower_recsys.preprocessing.split import TEST, VAL
from two_tower_recsys.settings import ModelConfig
from two_tower_recsys.training.fit import fit_two_tower

ITEM_TABLE = "item_embedding.weight"


class MeanHistoryEncoder(nn.Module):
    """The mean of the movies read so far, through one linear layer: a third kind of user tower."""

    kind: ClassVar[str] = "mean"
    reads_histories: ClassVar[bool] = True

    def __init__(self, item_embedding: nn.Embedding, max_history: int):
        super().__init__()
        self.dim, self.max_history = item_embedding.embedding_dim, max_history
        self.item_embedding = item_embedding  # the movie tower's table, shared
        self.projection = nn.Linear(self.dim, self.dim)

    @classmethod
    def from_config(
        cls, cfg: ModelConfig, *, n_users: int, item_tower: IdEmbeddingTower, sparse: bool
    ) -> MeanHistoryEncoder:
        return cls(item_tower.embedding, cfg.max_history)

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        counts = torch.arange(1, history.shape[1] + 1, device=history.device).view(1, -1, 1)
        return self.projection(self.item_embedding(history).cumsum(1) / counts)

    def forward(self, history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        last = (lengths.clamp(1, history.shape[1]) - 1).view(-1, 1, 1).expand(-1, 1, self.dim)
        return self.encode(history).gather(1, last).squeeze(1)

    @torch.no_grad()
    def embed_histories(self, history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self(history, lengths)

    def index_settings(self) -> dict[str, Any]:
        return {"max_history": self.max_history}

    def index_weights(self) -> dict[str, torch.Tensor]:
        return {
            name: value.detach().cpu().clone()
            for name, value in self.state_dict().items()
            if name != ITEM_TABLE
        }

    @classmethod
    def from_index(
        cls, settings: dict[str, Any], item_embeddings: torch.Tensor, weights: dict[str, torch.Tensor]
    ) -> MeanHistoryEncoder:
        table = nn.Embedding.from_pretrained(item_embeddings.float(), freeze=True)
        encoder = cls(table, int(settings["max_history"]))
        encoder.load_state_dict({**weights, ITEM_TABLE: table.weight}, strict=True)
        return encoder.eval().requires_grad_(False)


@pytest.fixture
def mean_kind_registered(monkeypatch):
    """MeanHistoryEncoder registered as model.user_tower=mean, for this test only.

    settings.py lists the accepted names (USER_TOWERS, checked in ModelConfig.__post_init__); the
    test adds "mean" to them as a new tower's module would add its name there."""
    monkeypatch.setitem(USER_ENCODERS, MeanHistoryEncoder.kind, MeanHistoryEncoder)
    monkeypatch.setattr(settings_module, "USER_TOWERS", (*settings_module.USER_TOWERS, "mean"))


def test_the_settings_offer_exactly_the_registered_kinds():
    assert set(settings_module.USER_TOWERS) == set(USER_ENCODERS)
    assert all(encoder.kind == name for name, encoder in USER_ENCODERS.items())


@pytest.mark.parametrize("kind", sorted(USER_ENCODERS))
def test_every_registered_kind_answers_what_the_code_asks(kind):
    cfg = ModelConfig(user_tower=kind, embedding_dim=16, max_history=6, n_heads=2)
    torch.manual_seed(0)
    items = IdEmbeddingTower(30, 16, init_std=0.1)
    encoder = build_user_encoder(cfg, n_users=12, item_tower=items, sparse=False)
    assert isinstance(encoder, nn.Module) and encoder.dim == 16
    encoder.eval()
    if not encoder.reads_histories:
        users = torch.tensor([0, 5, 11])
        assert encoder(users).shape == (3, 16)
        assert torch.equal(encoder(users), encoder.embed_all()[users])
        return
    assert encoder.max_history == 6
    history = torch.randint(0, 30, (4, 6), generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([6, 3, 1, 5])
    with torch.no_grad():
        states = encoder.encode(history)
        vectors = encoder(history, lengths)
    assert states.shape == (4, 6, 16)
    assert torch.allclose(vectors, states[torch.arange(4), lengths - 1], atol=1e-6)
    assert torch.allclose(encoder.embed_histories(history, lengths), vectors, atol=1e-6)
    # What the index stores rebuilds it around the movie vectors, which it does not store again.
    settings = json.loads(json.dumps(encoder.index_settings()))
    weights = encoder.index_weights()
    assert all(value.shape != items.embedding.weight.shape for value in weights.values())
    rebuilt = type(encoder).from_index(settings, items.embed_all().detach(), weights)
    assert not rebuilt.training and rebuilt.max_history == 6
    assert torch.allclose(rebuilt.embed_histories(history, lengths), vectors, atol=1e-5)


class FirstWeights(L.Callback):
    """The user tower's weights when Lightning starts training."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.weights = {k: v.detach().clone() for k, v in pl_module.net.user_tower.state_dict().items()}


def test_a_third_registered_kind_trains_evaluates_publishes_and_serves(mean_kind_registered, tmp_path):
    settings = compose_settings(
        [
            *TINY_SYNTHETIC,
            f"paths.raw_zip={tmp_path}/raw.zip",
            f"paths.processed_dir={tmp_path}/processed",
            f"paths.artifacts_dir={tmp_path}/artifacts",
            "trainer.optimizer=adam",
            f"trainer.max_interactions={TINY_FIT_MAX_PAIRS}",
            "trainer.batch_size=250",
            "model.max_history=10",
            "model.embedding_dim=16",
        ]
    )
    settings = dataclasses.replace(settings, model=dataclasses.replace(settings.model, user_tower="mean"))
    dataset = prepare_dataset(settings.data, settings.paths, progress=False)
    first = FirstWeights()
    fit = fit_two_tower(
        dataset,
        model_cfg=settings.model,
        trainer_cfg=dataclasses.replace(settings.trainer, max_epochs=1, limit_train_batches=3),
        eval_cfg=settings.eval,
        seed=0,
        checkpoint_dir=tmp_path / "checkpoints",
        callbacks=[first],
    )
    encoder = fit.module.net.user_tower  # rebuilt from the best checkpoint
    assert isinstance(encoder, MeanHistoryEncoder) and fit.module.reads_histories
    assert not torch.equal(encoder.projection.weight, first.weights["projection.weight"])
    monitored = f"recall@{settings.trainer.monitor_k}"
    assert len(fit.history) == 1 and 0.0 <= fit.history[0].metrics[monitored] <= 1.0

    # Each split is scored from the positives known before it.
    scorers = split_scorers(fit.module, dataset)
    users = torch.arange(dataset.n_users)
    for split in (VAL, TEST):
        known = histories_for(dataset, split, 10)
        assert torch.allclose(
            scorers[split].user_vectors(users), encoder.embed_histories(known.items, known.lengths), atol=1e-5
        )
    results = evaluate_on_splits(
        scorers, evaluation_tasks(dataset), settings.eval, progress=False, label="two_tower"
    )

    # The index stores the tower; evaluating the index rescored each split from the checkpoint.
    publish_index(dataset, settings, fit, published_scorer(fit.module, dataset))
    index = load_index(settings.paths.artifacts_dir)
    assert index.reads_histories and isinstance(index.history_tower, MeanHistoryEncoder)
    assert index.manifest["history_tower_kind"] == "mean"
    serving = histories_for(dataset, SERVING, 10)
    assert torch.allclose(
        index.user_embeddings, encoder.embed_histories(serving.items, serving.lengths), atol=1e-5
    )
    evaluate_pipeline.run(settings)
    report = json.loads((settings.paths.artifacts_dir / METRICS_FILE).read_text())
    for split, result in results.items():
        for name, value in result.metrics.items():
            assert report[split]["two_tower"][name] == pytest.approx(value, abs=1e-6)

    # A user's own latest positives sent fresh answer as their stored vector does.
    core = Recommender.from_artifacts(settings.paths.artifacts_dir)
    user = int(serving.lengths.argmax())
    history = dataset.item_ids[serving.items[user, : serving.lengths[user]].numpy()].tolist()
    user_id = int(dataset.user_ids[user])
    [fresh] = core.recommend([user_id], 10, histories=[history])
    [stored] = core.recommend([user_id], 10)
    assert [movie for movie, _, _ in fresh.recommendations] == [m for m, _, _ in stored.recommendations]
