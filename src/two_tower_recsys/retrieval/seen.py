"""Each user's already-seen movies, and masking them out of a batch of scores.

Shared by the evaluator (history excluded from ranking) and the recommender (seen movies never
recommended), so both exclude exactly the same items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def sorted_unique(keys: np.ndarray) -> np.ndarray:
    """The distinct values of an integer array, ascending: ``np.unique(keys)``, by sorting.

    NumPy 2.4's ``np.unique`` dedupes integers in a hash table first: ~20x slower than a sort on
    ML-20M's ~20M packed (user, movie) keys (56 s against 2.5 s on the 2-core machine).
    """
    keys = np.sort(keys)
    keep = np.empty(len(keys), dtype=bool)
    keep[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


@dataclass(frozen=True)
class SeenItems:
    """Compressed sparse rows: the items of user ``u`` are ``indices[indptr[u]:indptr[u + 1]]``."""

    indptr: torch.Tensor  # int64 [n_users + 1]
    indices: torch.Tensor  # int32 or int64 [n_pairs], sorted and unique within each user

    @classmethod
    def from_pairs(cls, user_idx: np.ndarray, item_idx: np.ndarray, n_users: int) -> SeenItems:
        """CSR of the pairs; repeated pairs count once. Items are stored as int32 when they fit."""
        user_idx = np.asarray(user_idx, dtype=np.int64)
        item_idx = np.asarray(item_idx, dtype=np.int64)
        n_items = int(item_idx.max()) + 1 if len(item_idx) else 1
        pairs = user_idx * n_items + item_idx  # one sort of packed keys: faster than a lexsort
        if len(pairs) > 1 and not np.all(pairs[1:] > pairs[:-1]):
            pairs = sorted_unique(pairs)
        users = pairs // n_items
        counts = np.bincount(users, minlength=n_users)
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        items = pairs - users * n_items
        # int32 halves the memory of ML-20M's 20M rated pairs; batch_positions widens per batch.
        items = items.astype(np.int32) if n_items <= np.iinfo(np.int32).max else items
        return cls(torch.from_numpy(indptr), torch.from_numpy(items))

    @classmethod
    def empty(cls, n_users: int) -> SeenItems:
        return cls(torch.zeros(n_users + 1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))

    def counts(self, users: torch.Tensor) -> torch.Tensor:
        """Number of seen items of each of ``users``."""
        return self.indptr[users + 1] - self.indptr[users]

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def items_of(self, user: int) -> torch.Tensor:
        return self.indices[self.indptr[user] : self.indptr[user + 1]]

    def batch_positions(self, users: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row in batch, item) of every seen item of ``users`` (int64), without a Python loop.

        NumPy, on views of the same memory: for the one-user batches of serving, each of these
        small operations costs ~1 us there against ~10 us in torch.
        """
        indptr, indices = self.indptr.numpy(), self.indices.numpy()
        users_np = users.numpy() if isinstance(users, torch.Tensor) else users
        if len(users_np) == 1:  # a one-user request: its items are one slice
            items = indices[indptr[users_np[0]] : indptr[users_np[0] + 1]].astype(np.int64)
            return np.zeros(len(items), dtype=np.int64), items
        starts = indptr[users_np]
        lengths = indptr[users_np + 1] - starts
        rows = np.repeat(np.arange(len(users_np)), lengths)
        first_of_row = np.cumsum(lengths) - lengths
        offsets = np.arange(int(lengths.sum())) - np.repeat(first_of_row, lengths)
        items = indices[np.repeat(starts, lengths) + offsets].astype(np.int64, copy=False)
        return rows, items


def mask_seen(scores: torch.Tensor, users: torch.Tensor, seen: SeenItems) -> torch.Tensor:
    """Set the scores of each user's seen items to -inf, in place; returns ``scores``."""
    rows, items = (torch.from_numpy(a).to(scores.device) for a in seen.batch_positions(users.cpu()))
    scores[rows, items] = float("-inf")
    return scores
