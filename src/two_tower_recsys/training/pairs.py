"""Training pairs: each epoch a fresh, seeded sample of at most ``max_pairs`` positive pairs.

Batches are cut from a random permutation of ALL train pairs (not the first N rows), so every
pair can be drawn in every epoch. Under DDP each process takes an equal, disjoint share of the
epoch's sample (equal so that no process waits for a batch that never comes).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler


class PairTable(Dataset):
    """(user_idx, item_idx) pairs fetched a whole batch at a time (``__getitems__``)."""

    def __init__(self, user_idx: np.ndarray, item_idx: np.ndarray):
        self.users = torch.as_tensor(np.asarray(user_idx, dtype=np.int64))
        self.items = torch.as_tensor(np.asarray(item_idx, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.users[index], self.items[index]

    def __getitems__(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.users[indices], self.items[indices]


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSampleBatches(Sampler[torch.Tensor]):
    """Yields index batches over a fresh seeded sample of ``min(n, max_pairs)`` pairs per epoch.

    Lightning calls :meth:`set_epoch` before each epoch; the sample depends only on
    ``(seed, epoch)``, so a run is reproducible and every DDP process draws the same sample.
    """

    def __init__(
        self, n_pairs: int, max_pairs: int, batch_size: int, seed: int, world: tuple[int, int] | None = None
    ):
        """``world``: (rank, world size); by default read from torch.distributed when iterating."""
        self.n_pairs, self.max_pairs, self.batch_size, self.seed = n_pairs, max_pairs, batch_size, seed
        self.world = world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rank_and_size(self) -> tuple[int, int]:
        return self.world if self.world is not None else _world()

    def _pairs_per_process(self) -> int:
        _, world = self._rank_and_size()
        return min(self.n_pairs, self.max_pairs) // world

    def __len__(self) -> int:
        return -(-self._pairs_per_process() // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        rank, world = self._rank_and_size()
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        sample = torch.randperm(self.n_pairs, generator=generator)[: min(self.n_pairs, self.max_pairs)]
        share = sample[rank::world][: self._pairs_per_process()]
        yield from torch.split(share, self.batch_size)


def _keep_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


def epoch_pairs_loader(
    user_idx: np.ndarray, item_idx: np.ndarray, *, max_pairs: int, batch_size: int, seed: int
) -> DataLoader:
    table = PairTable(user_idx, item_idx)
    sampler = EpochSampleBatches(len(table), max_pairs, batch_size, seed)
    # batch_sampler + __getitems__: one tensor gather per batch instead of 4096 __getitem__ calls.
    return DataLoader(table, batch_sampler=sampler, collate_fn=_keep_batch, num_workers=0)
