"""Scorers: anything that scores every catalogue movie for a batch of users.

The evaluator and the recommender take a :class:`Scorer` and nothing else, so popularity, the
two-tower model and whatever comes next are measured and served by the same code.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from two_tower_recsys.preprocessing.histories import UserHistories


class Scorer(Protocol):
    @property
    def n_items(self) -> int: ...

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores [len(users), n_items] (float32) in a fresh tensor the caller may modify."""
        ...


class PopularityScorer:
    """The same score for every user: the movie's number of positives."""

    def __init__(self, counts: np.ndarray | torch.Tensor):
        self.counts = torch.as_tensor(counts, dtype=torch.float32)

    @property
    def n_items(self) -> int:
        return len(self.counts)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.counts.expand(len(users), -1).clone()


class _DotProductScorer:
    """score(u, m) = dot(user vector of u, item_embeddings[m]) / temperature, over the catalogue.

    Subclasses say where a user's vector comes from (:meth:`user_vectors`).
    """

    def __init__(self, item_embeddings: torch.Tensor, temperature: float):
        self.item_embeddings_t = item_embeddings.detach().float().T.contiguous()
        self.temperature = float(temperature)

    @property
    def n_items(self) -> int:
        return self.item_embeddings_t.shape[1]

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.score_vectors(self.user_vectors(users))

    def score_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        """Scores of user vectors from anywhere (e.g. a fresh history) against the catalogue.

        No autograd context of its own (entering one costs ~10 us per call, a one-user request
        makes several): the catalogue is detached, so only a vector that requires grad records.

        BLAS sums a row's products in an order that depends on the batch's shape and on the
        processor's kernels, so the same user scored alone and in a batch may differ in the last
        bits (within 1e-5 relative); nothing downstream relies on more.
        """
        scores = vectors @ self.item_embeddings_t
        if self.temperature != 1.0:
            scores /= self.temperature
        return scores


class EmbeddingScorer(_DotProductScorer):
    """score(u, m) = dot(user_embeddings[u], item_embeddings[m]) / temperature."""

    def __init__(
        self, user_embeddings: torch.Tensor, item_embeddings: torch.Tensor, temperature: float = 1.0
    ):
        if user_embeddings.shape[1] != item_embeddings.shape[1]:
            widths = f"{user_embeddings.shape[1]} != {item_embeddings.shape[1]}"
            raise ValueError(f"user and item embeddings differ in width: {widths}")
        super().__init__(item_embeddings, temperature)
        self.user_embeddings = user_embeddings.detach().float()

    @property
    def n_users(self) -> int:
        return self.user_embeddings.shape[0]

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_embeddings[users]


class SequenceScorer(_DotProductScorer):
    """score(u, m) = dot(tower(history of u), item_embeddings[m]) / temperature.

    ``histories`` decide what each user's vector may read (train positives only for validation,
    train + validation for test), so one trained tower is scored leak-free on either split. User
    vectors are computed per scored batch from padded index tensors.
    """

    def __init__(
        self,
        tower: torch.nn.Module,
        histories: UserHistories,
        item_embeddings: torch.Tensor,
        temperature: float = 1.0,
    ):
        """``tower``: ``embed_histories(items [B, L], lengths [B]) -> [B, dim]`` (e.g. SequenceTower)."""
        super().__init__(item_embeddings, temperature)
        self.tower = tower
        self.histories = histories

    @property
    def n_users(self) -> int:
        return self.histories.n_users

    @torch.no_grad()
    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return self.tower.embed_histories(*self.histories.of(users))
