"""Towers: modules that map ids to embeddings. They know nothing about training.

Every tower takes a batch of indices and returns one row per index, and can embed its whole
vocabulary at once (:meth:`embed_all`) for indexing and evaluation. A movie tower over content
features would plug in behind the same interface; user towers, which may read histories instead of
indices, are described in ``user_encoders.py``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from two_tower_recsys.settings import ModelConfig


class Tower(nn.Module):
    """Interface: ``forward(indices) -> [len(indices), dim]`` and ``embed_all() -> [size, dim]``."""

    dim: int
    size: int

    def embed_all(self, batch_size: int = 65_536) -> torch.Tensor:
        device = next(self.parameters()).device  # the indices go where the weights are (CPU or GPU)
        rows = [
            self(torch.arange(start, min(start + batch_size, self.size), device=device))
            for start in range(0, self.size, batch_size)
        ]
        return torch.cat(rows) if rows else torch.empty(0, self.dim, device=device)


class IdEmbeddingTower(Tower):
    """A learned embedding per id: the original design's user and movie towers.

    As a user tower it is the ``id`` kind of user encoder (``user_encoders.IdUserEncoder``)."""

    kind: ClassVar[str] = "id"
    reads_histories: ClassVar[bool] = False

    def __init__(self, size: int, dim: int, *, init_std: float = 0.1, sparse: bool = False):
        super().__init__()
        self.size, self.dim = size, dim
        # sparse=True makes backward produce row-sparse gradients, so the optimizer touches only
        # the rows of the batch instead of all 165k x 64 parameters every step.
        self.embedding = nn.Embedding(size, dim, sparse=sparse)
        nn.init.normal_(self.embedding.weight, std=init_std)

    @classmethod
    def from_config(
        cls, cfg: ModelConfig, *, n_users: int, item_tower: Tower, sparse: bool
    ) -> IdEmbeddingTower:
        return cls(n_users, cfg.embedding_dim, init_std=cfg.init_std, sparse=sparse)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return self.embedding(indices)

    def embed_all(self, batch_size: int = 65_536) -> torch.Tensor:
        return self.embedding.weight


def build_tower(kind: str, size: int, dim: int, *, init_std: float, sparse: bool) -> Tower:
    if kind == "id":
        return IdEmbeddingTower(size, dim, init_std=init_std, sparse=sparse)
    raise ValueError(f"unknown tower kind {kind!r}")
