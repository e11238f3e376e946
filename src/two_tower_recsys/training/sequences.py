"""Training sequences for the sequence user tower: next-movie prediction at every position.

Each user's train positives, in the split's order, are cut into windows of at most
``max_history`` targets (:func:`training_windows`), so every train positive but the user's first is
a target once per full pass. In a window, inputs are all but the last movie and targets all but
the first: the tower learns from every prefix in one pass (causal attention). Each epoch draws
a fresh, seeded sample of at most ``max_targets`` target positions: the windows in a random
order, cut where the count is reached (the last one keeps only its first targets). Batches hold
about ``batch_size`` target positions.

Lightning calls ``set_epoch`` only on ``loader.sampler`` and ``loader.batch_sampler.sampler``,
never on a batch sampler itself, so the batch sampler reads its epoch from an
:class:`EpochCounter` held as its ``.sampler``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from two_tower_recsys.preprocessing.histories import UserHistories, histories_for, training_windows
from two_tower_recsys.preprocessing.processed import ProcessedDataset
from two_tower_recsys.preprocessing.split import VAL
from two_tower_recsys.retrieval.scorers import Scorer
from two_tower_recsys.settings import ModelConfig, TrainerConfig
from two_tower_recsys.training.pairs import epoch_generator, process_world

SequenceBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # inputs, targets, target mask


class TrainingSequences(Dataset):
    """Per user with at least two train positives: (inputs, targets), right-padded."""

    def __init__(self, histories: UserHistories):
        keep = histories.lengths >= 2
        self.items = histories.items[keep]
        self.n_targets = histories.lengths[keep] - 1

    def __len__(self) -> int:
        return len(self.n_targets)

    def __getitem__(self, index: int) -> SequenceBatch:
        return self.__getitems__(torch.tensor([[index], [int(self.n_targets[index])]]))

    def __getitems__(self, batch: torch.Tensor) -> SequenceBatch:
        """``batch``: [2, b] of (sequence index, targets kept); the columns are trimmed to fit."""
        sequences, kept = batch[0], batch[1]
        width = int(kept.max())
        rows = self.items[sequences, : width + 1]
        mask = torch.arange(width).unsqueeze(0) < kept.unsqueeze(1)
        return rows[:, :-1], rows[:, 1:], mask


class EpochCounter(Sampler[int]):
    """Holds the epoch for the batch sampler that owns it; Lightning calls its ``set_epoch``."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


class EpochSequenceBatches(Sampler[torch.Tensor]):
    """Batches of (sequence, targets kept) over a fresh seeded sample of target positions."""

    def __init__(
        self,
        n_targets: torch.Tensor,
        max_targets: int,
        batch_size: int,
        seed: int,
        world: tuple[int, int] | None = None,
    ):
        """``n_targets``: target positions of each sequence; ``batch_size``: target positions per
        batch (about); ``world``: (rank, world size), by default read from torch.distributed."""
        self.n_targets = torch.as_tensor(n_targets, dtype=torch.int64)
        self.max_targets, self.batch_size, self.seed = max_targets, batch_size, seed
        self.world = world
        self.sampler = EpochCounter()
        mean_targets = float(self.n_targets.float().mean()) if len(self.n_targets) else 1.0
        self.sequences_per_batch = max(1, round(batch_size / mean_targets))

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def _rank_and_size(self) -> tuple[int, int]:
        return self.world if self.world is not None else process_world()

    def _sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The epoch's sequences in random order and the targets each keeps (all > 0)."""
        order = torch.randperm(len(self.n_targets), generator=epoch_generator(self.seed, self.epoch))
        counts = self.n_targets[order]
        before = torch.cumsum(counts, 0) - counts
        kept = (self.max_targets - before).clamp(min=0).minimum(counts)
        chosen = kept > 0
        return order[chosen], kept[chosen]

    def _batches_per_process(self, n_sampled: int, world: int) -> int:
        # Equal for every process (DDP waits for the slowest), and never an empty batch.
        sequences_per_process = n_sampled // world
        return math.ceil(sequences_per_process / self.sequences_per_batch) if sequences_per_process else 0

    def __len__(self) -> int:
        _, world = self._rank_and_size()
        return self._batches_per_process(len(self._sample()[0]), world)

    def __iter__(self) -> Iterator[torch.Tensor]:
        rank, world = self._rank_and_size()
        order, kept = self._sample()
        n_batches = self._batches_per_process(len(order), world)
        if n_batches == 0:
            return
        share = torch.stack([order, kept])[:, rank::world][:, : len(order) // world]
        yield from torch.tensor_split(share, n_batches, dim=1)


def _keep_batch(batch: SequenceBatch) -> SequenceBatch:
    return batch


def epoch_sequences_loader(
    histories: UserHistories, *, max_targets: int, batch_size: int, seed: int
) -> DataLoader:
    """``histories``: training windows, each at most ``max_history + 1`` movies."""
    sequences = TrainingSequences(histories)
    batches = EpochSequenceBatches(sequences.n_targets, max_targets, batch_size, seed)
    return DataLoader(sequences, batch_sampler=batches, collate_fn=_keep_batch, num_workers=0)


def sequence_training_batch(
    tower: torch.nn.Module, batch: SequenceBatch
) -> tuple[torch.Tensor, torch.Tensor]:
    """(user vector before each target, target movie) at every kept target position."""
    inputs, targets, mask = batch
    states = tower.encode(inputs)
    return states[mask], targets[mask]


def earlier_positives(batch: SequenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept target, movie) for every movie before each kept target in its window.

    Kept targets are numbered as :func:`sequence_training_batch` returns them. They are the same
    user's positives (distinct, so never the target itself), which evaluation and serving never
    rank for that user: the full softmax need not push them down (``model.hide_earlier_positives``).
    """
    inputs, _, mask = batch
    sequence, position = torch.nonzero(mask, as_tuple=True)  # row-major: the order of states[mask]
    columns = torch.arange(inputs.shape[1], device=inputs.device)
    earlier = columns.unsqueeze(0) <= position.unsqueeze(1)  # inputs 0..j
    target = torch.arange(len(sequence), device=inputs.device).unsqueeze(1).expand_as(earlier)
    return target[earlier], inputs[sequence][earlier]


def target_counts(histories: UserHistories, n_items: int) -> np.ndarray:
    """How often each movie is a training target (every sequence position but the first)."""
    positions = torch.arange(histories.items.shape[1]).unsqueeze(0)
    is_target = (positions >= 1) & (positions < histories.lengths.unsqueeze(1))
    return np.bincount(histories.items[is_target].numpy(), minlength=n_items)


@dataclass
class SequenceTraining:
    """What fitting a sequence user tower needs besides the module."""

    loader: DataLoader
    item_counts: np.ndarray  # how often each movie is a target: what logQ corrects for
    validation_scorer: Callable[[L.LightningModule], Scorer]  # reads train positives only


def sequence_training(
    dataset: ProcessedDataset, model_cfg: ModelConfig, trainer_cfg: TrainerConfig, seed: int
) -> SequenceTraining:
    sequences = training_windows(dataset.train, dataset.n_users, model_cfg.max_history)
    validation_histories = histories_for(dataset, VAL, model_cfg.max_history)

    def scorer_of(module: L.LightningModule) -> Scorer:
        return module.scorer(validation_histories)

    return SequenceTraining(
        epoch_sequences_loader(
            sequences, max_targets=trainer_cfg.max_interactions, batch_size=trainer_cfg.batch_size, seed=seed
        ),
        target_counts(sequences, dataset.n_items),
        scorer_of,
    )
