"""The LightningModule that trains a :class:`TwoTower` network with softmax cross-entropy."""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any

import lightning as L
import numpy as np
import torch

from two_tower_recsys.models.components.content import ContentItemTower, ContentVocabulary
from two_tower_recsys.models.components.towers import Tower, build_tower
from two_tower_recsys.models.components.two_tower import TwoTower
from two_tower_recsys.models.components.user_encoders import build_user_encoder
from two_tower_recsys.preprocessing.histories import UserHistories
from two_tower_recsys.retrieval.scorers import EmbeddingScorer, SequenceScorer
from two_tower_recsys.settings import ModelConfig, TrainerConfig, settings_from_mapping
from two_tower_recsys.training.losses import full_softmax_loss, in_batch_softmax_loss, mixed_softmax_loss
from two_tower_recsys.training.negatives import MixedNegatives
from two_tower_recsys.training.optim import LazyAdam
from two_tower_recsys.training.sequences import earlier_positives, sequence_training_batch


class TwoTowerModule(L.LightningModule):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        model: dict[str, Any],
        optimizer: dict[str, Any],
        item_counts: np.ndarray | None = None,
        content_vocabulary: dict[str, Any] | None = None,
        seed: int = 0,
    ):
        """``model`` and ``optimizer`` are plain dicts (ModelConfig / TrainerConfig fields) so that
        the checkpoint's hyperparameters rebuild the module with ``load_from_checkpoint``;
        ``content_vocabulary`` (a :class:`ContentVocabulary` as a dict) when the movie tower reads
        content, whose tokens the caller then sets (:meth:`ContentItemTower.set_tokens`); ``seed``: of
        the negatives drawn per step (``model.negatives=mixed``)."""
        super().__init__()
        # logger=False: the pipeline logs the whole resolved config to MLflow itself.
        self.save_hyperparameters(ignore=["item_counts"], logger=False)
        self.model_config = settings_from_mapping(ModelConfig, model, "model")
        self.optimizer_config = settings_from_mapping(TrainerConfig, optimizer, "trainer")
        sparse = self.optimizer_config.optimizer == "lazy_adam"
        cfg = self.model_config
        if cfg.reads_content:
            if content_vocabulary is None:
                raise ValueError("a movie tower that reads content needs its content_vocabulary")
            item_tower: Tower = ContentItemTower(
                n_items,
                cfg.embedding_dim,
                ContentVocabulary.from_dict(content_vocabulary),
                with_id="id" in cfg.item_features,
                init_std=cfg.init_std,
                sparse=sparse,
                id_dropout=cfg.id_dropout,
            )
        else:
            item_tower = build_tower("id", n_items, cfg.embedding_dim, init_std=cfg.init_std, sparse=sparse)
        user_tower = build_user_encoder(cfg, n_users=n_users, item_tower=item_tower, sparse=sparse)
        self.net = TwoTower(user_tower, item_tower, temperature=cfg.temperature)
        # log of each movie's probability of being drawn as a training pair (logQ correction);
        # derived from the data, so not saved in the checkpoint.
        log_q = torch.zeros(n_items)
        if item_counts is not None:
            counts = torch.as_tensor(item_counts, dtype=torch.float64)
            log_q = torch.log((counts / counts.sum()).clamp_min(1e-12)).float()
        self.register_buffer("log_q", log_q, persistent=False)
        self.mixed_negatives = None
        if cfg.negatives == "mixed":
            counts = item_counts if item_counts is not None else np.zeros(n_items)
            self.mixed_negatives = MixedNegatives(counts, cfg.sampled_negatives, seed)

    @classmethod
    def from_settings(
        cls,
        n_users: int,
        n_items: int,
        model: ModelConfig,
        trainer: TrainerConfig,
        item_counts: np.ndarray,
        content_vocabulary: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> TwoTowerModule:
        return cls(n_users, n_items, asdict(model), asdict(trainer), item_counts, content_vocabulary, seed)

    @property
    def reads_histories(self) -> bool:
        """Whether the user tower reads histories (batches of sequences) rather than user indices."""
        return self.net.user_tower.reads_histories

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        if self.reads_histories:  # (inputs, targets, mask): every target position of each sequence
            user_emb, items = sequence_training_batch(self.net.user_tower, batch)
        else:
            users, items = batch
            user_emb = self.net.user_tower(users)
        cfg = self.model_config
        hidden = earlier_positives(batch) if cfg.hide_earlier_positives else None
        if cfg.negatives == "mixed":
            candidates = torch.cat([items, self.mixed_negatives.draw(self.global_step)])
            candidate_emb = self.net.item_tower(candidates)  # one lookup for the batch and the pool
            item_emb = candidate_emb[: len(items)]
            log_expected = self.mixed_negatives.log_expected_draws(candidates, self.log_q, len(items))
            loss = mixed_softmax_loss(
                user_emb,
                candidate_emb,
                candidates,
                temperature=cfg.temperature,
                label_smoothing=cfg.label_smoothing,
                log_q=log_expected if cfg.logq_correction else None,
                hidden=hidden,
                # smoothing spread as evenly over the catalogue as the full softmax spreads it
                smoothing_weights=torch.exp(-log_expected),
            )
        elif cfg.negatives == "full":
            item_emb = self.net.item_tower(items)
            loss = full_softmax_loss(
                user_emb,
                self.net.item_tower.embed_all(),
                items,
                temperature=cfg.temperature,
                label_smoothing=cfg.label_smoothing,
                hidden=hidden,
            )
        else:
            item_emb = self.net.item_tower(items)
            log_q = self.log_q if cfg.logq_correction else None
            loss = in_batch_softmax_loss(user_emb, item_emb, items, temperature=cfg.temperature, log_q=log_q)
        if cfg.l2_reg:
            # Only the rows in the batch are penalised (classic matrix-factorisation L2), so the
            # gradient stays row-sparse; weight decay would shrink every row every step.
            loss = loss + cfg.l2_reg * (user_emb.pow(2).sum(1).mean() + item_emb.pow(2).sum(1).mean())
        self.log(  # the loggers get it with the epoch's validation (training/validation.py)
            "train_loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(items),
            sync_dist=True,
            logger=False,
        )
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        cfg = self.optimizer_config
        if cfg.optimizer == "lazy_adam":
            return LazyAdam(self.parameters(), lr=cfg.lr)
        # fused: one kernel over all parameters instead of a dozen tensor ops each (5x faster
        # steps on CPU, where the dense 27k x 64 movie table is updated every step).
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        return torch.optim.Adam(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)

    @torch.no_grad()
    def scorer(self, histories: UserHistories | None = None) -> EmbeddingScorer | SequenceScorer:
        """A scorer over the current weights (detached copies: training may go on).

        A tower that reads histories needs ``histories``: what each user may read when scored (e.g.
        train positives only for validation); one that reads user indices ignores them."""
        if self.reads_histories:
            if histories is None:
                raise ValueError(
                    f"a {self.net.user_tower.kind} user tower scores users from histories: pass histories"
                )
            tower = copy.deepcopy(self.net.user_tower).cpu().eval()
            return SequenceScorer(tower, histories, self.movie_vectors(), self.model_config.temperature)
        return EmbeddingScorer(
            self.net.user_tower.embed_all().detach().cpu().clone(),
            self.movie_vectors(),
            self.model_config.temperature,
        )

    @torch.no_grad()
    def movie_vectors(self) -> torch.Tensor:
        """Every training-catalogue movie's vector as served, on the CPU: in eval mode, as the
        scorer is called between training steps too (per-epoch validation), where a movie tower's
        id dropout must not leave ids out."""
        tower = self.net.item_tower
        was_training = tower.training
        tower.eval()
        try:
            return tower.embed_all().detach().cpu().clone()
        finally:
            tower.train(was_training)
