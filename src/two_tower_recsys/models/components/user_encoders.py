"""User encoders: what turns a user into a vector, and what each kind reads to do so.

Every kind of user tower (``model.user_tower``) is a class registered in :data:`USER_ENCODERS`
under its name. The rest of the code asks the encoder what it reads, never which class it is
(as RecTools' models declare the users they support), through one declared capability:

- ``reads_histories = False`` (:class:`IdUserEncoder`): the user's index. Trained on (user, movie)
  pairs; ``forward(users [B]) -> [B, dim]``; ``embed_all() -> [n_users, dim]`` is every user's
  vector, for validation, evaluation on any split and the index alike.
- ``reads_histories = True`` (:class:`HistoryUserEncoder`): the user's most recent positives,
  oldest first, right-padded, at most ``max_history`` movies. Trained on next-movie prediction at
  every position: ``encode(history [B, L]) -> [B, L, dim]`` is the vector after each prefix, and
  must read only that prefix (causal). ``embed_histories(history, lengths) -> [B, dim]`` is the
  vector after each row's last real movie: each split is scored from the positives known before
  it, the index stores the vectors of every known positive, and a request may send a fresh
  history. The encoder reads movies through the movie tower (its id table, or id embedding plus
  content vector), whose output for every catalogue movie the index already holds
  (``item_embeddings.pt``); it saves the rest of itself (``index_settings``, ``index_weights``)
  and is rebuilt around those movie vectors (``from_index``), in eval mode.

Every kind is built from the model settings by ``from_config``. Adding a kind: its own module
implementing one of the two protocols, and one entry in :data:`USER_ENCODERS`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import torch

from two_tower_recsys.models.components.sequence_tower import SequenceTower
from two_tower_recsys.models.components.towers import IdEmbeddingTower, Tower
from two_tower_recsys.settings import ModelConfig


class UserEncoder(Protocol):
    kind: ClassVar[str]  # its name in USER_ENCODERS (the value of model.user_tower)
    reads_histories: ClassVar[bool]
    dim: int

    @classmethod
    def from_config(cls, cfg: ModelConfig, *, n_users: int, item_tower: Tower, sparse: bool) -> UserEncoder:
        """A fresh encoder; ``item_tower``: the movie tower (whose table it may share); ``sparse``:
        the optimizer updates embedding rows only (trainer.optimizer=lazy_adam)."""
        ...


class IdUserEncoder(UserEncoder, Protocol):
    def __call__(self, users: torch.Tensor) -> torch.Tensor: ...

    def embed_all(self) -> torch.Tensor: ...


class HistoryUserEncoder(UserEncoder, Protocol):
    max_history: int  # model.max_history: training windows and scored histories are cut to it

    def __call__(self, history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor: ...

    def encode(self, history: torch.Tensor) -> torch.Tensor: ...

    def embed_histories(self, history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor: ...

    def index_settings(self) -> dict[str, Any]:
        """JSON-able settings that, with the movie vectors and ``index_weights``, rebuild it."""
        ...

    def index_weights(self) -> dict[str, torch.Tensor]:
        """Every weight but the movie table, detached, on the CPU."""
        ...

    @classmethod
    def from_index(
        cls, settings: dict[str, Any], item_embeddings: torch.Tensor, weights: dict[str, torch.Tensor]
    ) -> HistoryUserEncoder:
        """The saved encoder around ``item_embeddings``, in eval mode, without gradients."""
        ...


USER_ENCODERS: dict[str, type[UserEncoder]] = {
    IdEmbeddingTower.kind: IdEmbeddingTower,
    SequenceTower.kind: SequenceTower,
}


def user_encoder_class(kind: str) -> type[UserEncoder]:
    try:
        return USER_ENCODERS[kind]
    except KeyError:
        raise ValueError(
            f"unknown model.user_tower {kind!r}; choose one of {', '.join(USER_ENCODERS)}"
        ) from None


def build_user_encoder(
    cfg: ModelConfig, *, n_users: int, item_tower: Tower, sparse: bool
) -> IdUserEncoder | HistoryUserEncoder:
    return user_encoder_class(cfg.user_tower).from_config(
        cfg, n_users=n_users, item_tower=item_tower, sparse=sparse
    )


def history_encoder_class(kind: str) -> type[HistoryUserEncoder]:
    """The registered kind ``kind``, which must read histories (what an index may store)."""
    encoder = user_encoder_class(kind)
    if not encoder.reads_histories:
        raise ValueError(f"user tower {kind!r} reads user indices, not histories")
    return encoder  # type: ignore[return-value]  # reads_histories is the protocol's declaration
