"""Scorers of a trained two-tower module for each evaluated split, and for the published index.

A user tower that reads user indices has fixed user vectors, so one scorer serves every split.
The vector of one that reads histories depends on the history it reads, so each split gets a
scorer over exactly the positives known before it (train for validation, train + validation for
test), and the index published for serving holds the vectors built from every known positive.
"""

from __future__ import annotations

from pathlib import Path

import torch

from two_tower_recsys.artifacts.store import CHECKPOINT, verified_manifest
from two_tower_recsys.errors import ArtifactError
from two_tower_recsys.pipelines.evaluation_suite import SPLITS_EVALUATED
from two_tower_recsys.preprocessing.histories import SERVING, histories_for
from two_tower_recsys.preprocessing.processed import ProcessedDataset
from two_tower_recsys.retrieval.scorers import EmbeddingScorer, Scorer
from two_tower_recsys.training.checkpoint import load_two_tower_checkpoint
from two_tower_recsys.training.module import TwoTowerModule

PUBLISH_BATCH_USERS = 4096


def split_scorers(module: TwoTowerModule, dataset: ProcessedDataset) -> dict[str, Scorer]:
    if not module.reads_histories:
        return dict.fromkeys(SPLITS_EVALUATED, module.scorer())
    max_history = module.net.user_tower.max_history
    return {split: module.scorer(histories_for(dataset, split, max_history)) for split in SPLITS_EVALUATED}


def published_scorer(module: TwoTowerModule, dataset: ProcessedDataset) -> EmbeddingScorer:
    """Fixed user vectors for the index: a history-reading tower's read each user's latest positives."""
    if not module.reads_histories:
        return module.scorer()
    serving = module.scorer(histories_for(dataset, SERVING, module.net.user_tower.max_history))
    # In batches: a transformer pass over every user at once would hold activations of
    # n_users x max_history x dim per layer (gigabytes at ML-20M scale).
    users = torch.arange(dataset.n_users)
    return EmbeddingScorer(
        torch.cat([serving.user_vectors(batch) for batch in users.split(PUBLISH_BATCH_USERS)]),
        serving.item_embeddings_t.T,
        serving.temperature,
    )


def load_checkpoint_module(artifacts_dir: Path) -> TwoTowerModule:
    """The trained module of a verified index directory (its checkpoint must be there)."""
    if CHECKPOINT not in verified_manifest(artifacts_dir).get("files", {}):
        raise ArtifactError(f"{artifacts_dir} has no {CHECKPOINT}: retrain with two-tower train")
    return load_two_tower_checkpoint(Path(artifacts_dir) / CHECKPOINT)
