"""The two-tower network: score(u, m) = dot(user_tower(u), movie_tower(m)) / temperature."""

from __future__ import annotations

import torch
from torch import nn

from two_tower_recsys.models.components.sequence_tower import SequenceTower
from two_tower_recsys.models.components.towers import Tower


class TwoTower(nn.Module):
    def __init__(self, user_tower: Tower | SequenceTower, item_tower: Tower, temperature: float = 1.0):
        super().__init__()
        if user_tower.dim != item_tower.dim:
            raise ValueError(f"tower widths differ: user {user_tower.dim}, movie {item_tower.dim}")
        self.user_tower = user_tower
        self.item_tower = item_tower
        self.temperature = temperature

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Score of each (user, movie) pair: [B] from two [B] index tensors (the ONNX scorer).

        ID user tower only: a :class:`SequenceTower` reads histories, not user indices."""
        if isinstance(self.user_tower, SequenceTower):
            raise TypeError("a sequence user tower scores histories, not user indices")
        return (self.user_tower(user_idx) * self.item_tower(item_idx)).sum(-1) / self.temperature
