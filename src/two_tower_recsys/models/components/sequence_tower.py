"""A user tower that reads the user's recent positives: a small causal transformer (SASRec-style).

Input: the user's most recent movies, oldest first, right-padded, as ``[B, L]`` item indices plus
each row's length. The movies are read through the movie tower itself (shared, not copied): its
id table, or, for a movie tower that reads content, its id embedding plus content vector. So a
movie means the same thing as an input and as a candidate, and once served (around the index's
movie vectors) a history naming a movie that has no id embedding reads its content vector.
Learned positions count from the start of the window. Attention is causal, so the output at
position ``j`` depends on positions ``0..j`` only: one forward pass gives the user vector after
every prefix (next-item training at every position), and right padding never leaks into real
positions. The user vector is the output at the last real position; score = dot(user vector,
movie vector) / temperature, as for the ID tower.

It is the ``sequence`` kind of user encoder (``user_encoders.HistoryUserEncoder``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from two_tower_recsys.models.components.towers import IdEmbeddingTower, Tower
from two_tower_recsys.settings import ModelConfig


class CausalBlock(nn.Module):
    """Pre-norm transformer block: causal multi-head self-attention, then a feed-forward layer."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"width {dim} is not divisible by {n_heads} heads")
        self.n_heads = n_heads
        self.attention_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attention_out = nn.Linear(dim, dim)
        self.feed_forward_norm = nn.LayerNorm(dim)
        # Width-1 hidden layer as in SASRec: the sequences are short, the cost is per position.
        self.feed_forward = nn.Sequential(
            nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim)
        )
        self.residual_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        qkv = self.qkv(self.attention_norm(x)).view(batch, length, 3, self.n_heads, dim // self.n_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        # No dropout on the attention weights: with it, PyTorch's CPU attention takes its unfused
        # path, about 9x slower; the embeddings, residuals and feed-forward layer keep theirs.
        attended = F.scaled_dot_product_attention(query, key, value, is_causal=True)
        attended = attended.transpose(1, 2).reshape(batch, length, dim)
        x = x + self.residual_dropout(self.attention_out(attended))
        return x + self.residual_dropout(self.feed_forward(self.feed_forward_norm(x)))


@dataclass(frozen=True)
class TowerShape:
    """What rebuilds a :class:`SequenceTower` around a movie table (the index records it)."""

    max_history: int
    n_blocks: int
    n_heads: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TowerShape:
        return cls(int(values["max_history"]), int(values["n_blocks"]), int(values["n_heads"]))


# The movie tower's weights under the sequence tower (an id table's is ``item_embedding.weight``):
# stored once, as the index's item embeddings, never with the tower's own weights.
ITEM_WEIGHTS_PREFIX = "item_embedding."


def _movie_vector_scale(item_vectors: nn.Module) -> float:
    """The standard deviation of the movie vectors ``item_vectors`` gives (in eval mode: a movie
    tower's training-time id dropout must not change it)."""
    if isinstance(item_vectors, nn.Embedding):
        return float(item_vectors.weight.detach().std())
    was_training = item_vectors.training
    with torch.no_grad():
        scale = float(item_vectors.eval().embed_all().std())
    item_vectors.train(was_training)
    return scale


class SequenceTower(nn.Module):
    """``forward(history [B, L], lengths [B]) -> [B, dim]``; ``encode(history) -> [B, L, dim]``."""

    kind: ClassVar[str] = "sequence"
    reads_histories: ClassVar[bool] = True

    def __init__(
        self,
        item_embedding: nn.Module,
        *,
        max_history: int,
        n_blocks: int,
        n_heads: int,
        dropout: float,
    ):
        """``item_embedding``: item indices [N] -> movie vectors [N, dim], an ``nn.Embedding`` (the
        id movie tower's table, or the index's movie vectors when served) or a movie tower."""
        super().__init__()
        self.dim = (
            item_embedding.embedding_dim if isinstance(item_embedding, nn.Embedding) else item_embedding.dim
        )
        self.max_history = max_history
        self.item_embedding = item_embedding  # the movie tower's: its weights, two uses
        self.positions = nn.Embedding(max_history, self.dim)
        # At the movie vectors' scale: larger positions would drown which movie sits there.
        nn.init.normal_(self.positions.weight, std=_movie_vector_scale(item_embedding))
        self.input_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(CausalBlock(self.dim, n_heads, dropout) for _ in range(n_blocks))
        self.output_norm = nn.LayerNorm(self.dim)

    @classmethod
    def from_config(cls, cfg: ModelConfig, *, n_users: int, item_tower: Tower, sparse: bool) -> SequenceTower:
        # An id tower's table itself (its weight stays ``item_embedding.weight`` in checkpoints);
        # any other movie tower whole, so that the history reads what the candidates are.
        reads = item_tower.embedding if isinstance(item_tower, IdEmbeddingTower) else item_tower
        return cls(
            reads,
            max_history=cfg.max_history,
            n_blocks=cfg.n_blocks,
            n_heads=cfg.n_heads,
            dropout=cfg.dropout,
        )

    def shape(self) -> TowerShape:
        return TowerShape(self.max_history, len(self.blocks), self.blocks[0].n_heads if self.blocks else 1)

    def weights_without_items(self) -> dict[str, torch.Tensor]:
        """Every weight but the shared movie tower's, detached, on the CPU."""
        return {
            name: tensor.detach().cpu().clone()
            for name, tensor in self.state_dict().items()
            if not name.startswith(ITEM_WEIGHTS_PREFIX)
        }

    @classmethod
    def from_weights(
        cls, shape: TowerShape, item_embeddings: torch.Tensor, weights: dict[str, torch.Tensor]
    ) -> SequenceTower:
        """The tower saved by :meth:`weights_without_items` around ``item_embeddings``, in eval mode
        (dropout is only ever used in training, so it is 0 here)."""
        table = nn.Embedding.from_pretrained(item_embeddings.float(), freeze=True)
        tower = cls(
            table, max_history=shape.max_history, n_blocks=shape.n_blocks, n_heads=shape.n_heads, dropout=0.0
        )
        tower.load_state_dict({**weights, f"{ITEM_WEIGHTS_PREFIX}weight": table.weight}, strict=True)
        return tower.eval().requires_grad_(False)

    def index_settings(self) -> dict[str, Any]:
        return self.shape().as_dict()

    def index_weights(self) -> dict[str, torch.Tensor]:
        return self.weights_without_items()

    @classmethod
    def from_index(
        cls, settings: dict[str, Any], item_embeddings: torch.Tensor, weights: dict[str, torch.Tensor]
    ) -> SequenceTower:
        return cls.from_weights(TowerShape.from_dict(settings), item_embeddings, weights)

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        """The user vector after each prefix: row b, position j reads ``history[b, :j + 1]``."""
        length = history.shape[1]
        if length > self.max_history:
            raise ValueError(f"history of {length} movies is longer than max_history={self.max_history}")
        positions = self.positions.weight[:length].unsqueeze(0)
        # Flat: a movie tower maps a vector of indices to rows (a table would take any shape).
        movies = self.item_embedding(history.flatten()).unflatten(0, history.shape)
        x = self.input_dropout(movies + positions)
        for block in self.blocks:
            x = block(x)
        return self.output_norm(x)

    def forward(self, history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The user vector after each row's last real movie (``lengths`` >= 1)."""
        states = self.encode(history)
        last = (lengths.clamp(1, history.shape[1]) - 1).view(-1, 1, 1).expand(-1, 1, self.dim)
        return states.gather(1, last).squeeze(1)

    @torch.no_grad()
    def embed_histories(
        self, history: torch.Tensor, lengths: torch.Tensor, batch_size: int = 4096
    ) -> torch.Tensor:
        """User vectors of many padded histories, in batches, in eval mode (dropout off)."""
        was_training = self.training
        if was_training:  # switching modes walks every submodule: a cost per call when serving
            self.eval()
        try:
            rows = []
            for start in range(0, len(history), batch_size):
                batch_lengths = lengths[start : start + batch_size]
                width = max(int(batch_lengths.max()), 1)  # the batch's padding beyond it is unread
                rows.append(self(history[start : start + batch_size, :width], batch_lengths))
        finally:
            if was_training:
                self.train()
        return torch.cat(rows) if rows else torch.empty(0, self.dim)
