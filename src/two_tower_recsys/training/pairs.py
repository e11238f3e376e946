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


def process_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The random stream of one epoch: it depends only on (seed, epoch), the same in every process."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class EpochSample(Sampler[int]):
    """A fresh seeded sample of ``min(n, max_pairs)`` pair indices per epoch, this process's share.

    The sample depends only on ``(seed, epoch)``, so a run is reproducible, a resumed run draws
    what the interrupted one would have, and every DDP process draws the same sample.
    Lightning calls :meth:`set_epoch` before each epoch because it is the ``sampler`` of the
    loader's batch sampler (Lightning 2.6 looks for ``set_epoch`` on ``dataloader.sampler`` and
    ``dataloader.batch_sampler.sampler`` only, never on the batch sampler itself).
    """

    def __init__(self, n_pairs: int, max_pairs: int, seed: int, world: tuple[int, int] | None = None):
        """``world``: (rank, world size); by default read from torch.distributed when iterating."""
        self.n_pairs, self.max_pairs, self.seed = n_pairs, max_pairs, seed
        self.world = world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rank_and_size(self) -> tuple[int, int]:
        return self.world if self.world is not None else process_world()

    def __len__(self) -> int:
        _, world = self._rank_and_size()
        return min(self.n_pairs, self.max_pairs) // world

    def indices(self) -> torch.Tensor:
        """This epoch's share as one tensor (what the batches are cut from)."""
        rank, world = self._rank_and_size()
        sample = torch.randperm(self.n_pairs, generator=epoch_generator(self.seed, self.epoch))[
            : min(self.n_pairs, self.max_pairs)
        ]
        return sample[rank::world][: len(self)]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())


class EpochSampleBatches(Sampler[torch.Tensor]):
    """Index batches of ``batch_size`` cut from the epoch's :class:`EpochSample` (its ``sampler``)."""

    def __init__(self, sampler: EpochSample, batch_size: int):
        self.sampler, self.batch_size = sampler, batch_size

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        # Tensor slices, not Python ints: one gather per batch.
        yield from torch.split(self.sampler.indices(), self.batch_size)


def _keep_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


def epoch_pairs_loader(
    user_idx: np.ndarray, item_idx: np.ndarray, *, max_pairs: int, batch_size: int, seed: int
) -> DataLoader:
    table = PairTable(user_idx, item_idx)
    batches = EpochSampleBatches(EpochSample(len(table), max_pairs, seed), batch_size)
    # batch_sampler + __getitems__: one tensor gather per batch instead of 4096 __getitem__ calls.
    return DataLoader(table, batch_sampler=batches, collate_fn=_keep_batch, num_workers=0)
