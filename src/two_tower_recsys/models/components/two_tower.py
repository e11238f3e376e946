"""The two-tower network: score(u, m) = dot(user_tower(u), movie_tower(m)) / temperature."""

from __future__ import annotations

import torch
from torch import nn

from two_tower_recsys.models.components.towers import Tower
from two_tower_recsys.models.components.user_encoders import UserEncoder


class TwoTower(nn.Module):
    def __init__(self, user_tower: UserEncoder, item_tower: Tower, temperature: float = 1.0):
        super().__init__()
        if user_tower.dim != item_tower.dim:
            raise ValueError(f"tower widths differ: user {user_tower.dim}, movie {item_tower.dim}")
        self.user_tower = user_tower
        self.item_tower = item_tower
        self.temperature = temperature

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Score of each (user, movie) pair: [B] from two [B] index tensors (the ONNX scorer).

        A user tower that reads user indices only: one that reads histories has none to score."""
        if self.user_tower.reads_histories:
            raise TypeError(f"a {self.user_tower.kind} user tower scores histories, not user indices")
        return (self.user_tower(user_idx) * self.item_tower(item_idx)).sum(-1) / self.temperature
