from types import SimpleNamespace

import lightning as L
import numpy as np
import torch

from two_tower_recsys.preprocessing.histories import UserHistories
from two_tower_recsys.training.sequences import (
    EpochSequenceBatches,
    TrainingSequences,
    earlier_positives,
    epoch_sequences_loader,
    sequence_training_batch,
    target_counts,
)


def histories(lengths, width=6):
    lengths = torch.tensor(lengths)
    items = torch.arange(len(lengths) * width).view(len(lengths), width) % 97
    items[torch.arange(width) >= lengths.unsqueeze(1)] = 0
    return UserHistories(items, lengths)


def sampled_targets(sampler):
    """{sequence: targets kept} over one epoch."""
    drawn = torch.cat(list(sampler), dim=1)
    assert len(set(drawn[0].tolist())) == drawn.shape[1]  # each sequence once per epoch
    return dict(zip(drawn[0].tolist(), drawn[1].tolist(), strict=True))


def test_each_epoch_samples_at_most_max_targets_fresh_and_seeded():
    n_targets = torch.randint(1, 50, (200,), generator=torch.Generator().manual_seed(0))
    sampler = EpochSequenceBatches(n_targets, max_targets=1000, batch_size=128, seed=7)
    first = sampled_targets(sampler)
    assert sum(first.values()) == 1000
    assert all(0 < kept <= n_targets[sequence] for sequence, kept in first.items())
    assert sum(kept < n_targets[sequence] for sequence, kept in first.items()) <= 1  # only the last is cut
    sampler.set_epoch(1)
    second = sampled_targets(sampler)
    assert sum(second.values()) == 1000 and second.keys() != first.keys()
    sampler.set_epoch(0)
    assert sampled_targets(sampler) == first  # depends only on (seed, epoch)


def test_small_data_uses_every_target_once_per_epoch_in_about_batch_size_batches():
    n_targets = torch.full((100,), 10)
    sampler = EpochSequenceBatches(n_targets, max_targets=2_000_000, batch_size=40, seed=0)
    assert sampled_targets(sampler) == dict.fromkeys(range(100), 10)
    assert len(sampler) == 25 and all(batch.shape[1] == 4 for batch in sampler)


def test_ddp_processes_get_equal_batch_counts_over_disjoint_sequences():
    n_targets = torch.randint(1, 20, (101,), generator=torch.Generator().manual_seed(1))
    samplers = [EpochSequenceBatches(n_targets, 10_000, 50, seed=3, world=(rank, 2)) for rank in (0, 1)]
    batches = [list(sampler) for sampler in samplers]
    assert len(batches[0]) == len(batches[1]) == len(samplers[0]) > 0
    assert all(batch.shape[1] > 0 for share in batches for batch in share)
    shares = [set(torch.cat(share, dim=1)[0].tolist()) for share in batches]
    assert not shares[0] & shares[1] and len(shares[0]) == len(shares[1]) == 50


def test_inputs_are_the_targets_shifted_and_the_mask_covers_the_kept_targets():
    sequences = TrainingSequences(histories([6, 1, 3]))  # the one-movie user has no target
    assert sequences.n_targets.tolist() == [5, 2]
    inputs, targets, mask = sequences.__getitems__(torch.tensor([[1, 0], [2, 3]]))
    assert inputs.shape == targets.shape == mask.shape == (2, 3)  # trimmed to the longest kept
    full = sequences.items
    assert torch.equal(inputs[1], full[0, :3]) and torch.equal(targets[1], full[0, 1:4])
    assert torch.equal(inputs[0, :2], full[1, :2]) and torch.equal(targets[0, :2], full[1, 1:3])
    assert mask.tolist() == [[True, True, False], [True, True, True]]


def test_earlier_positives_are_each_kept_targets_preceding_movies_in_its_window():
    windows = UserHistories(torch.tensor([[5, 8, 2, 9], [7, 3, 0, 0]]), torch.tensor([4, 2]))
    sequences = TrainingSequences(windows)
    batch = sequences.__getitems__(torch.tensor([[1, 0], [1, 2]]))  # user 1's target; 2 of user 0's
    # Kept targets in the order the loss sees them: 3 (after 7), then 8 (after 5), 2 (after 5, 8).
    identity_tower = SimpleNamespace(encode=lambda inputs: inputs.unsqueeze(2).float())
    _, targets = sequence_training_batch(identity_tower, batch)
    assert targets.tolist() == [3, 8, 2]

    rows, movies = earlier_positives(batch)

    assert sorted(zip(rows.tolist(), movies.tolist(), strict=True)) == [(0, 7), (1, 5), (2, 5), (2, 8)]


def test_target_counts_skip_each_sequences_first_movie_and_the_padding():
    counts = target_counts(UserHistories(torch.tensor([[1, 2, 2], [3, 0, 0]]), torch.tensor([3, 1])), 4)
    assert counts.tolist() == [0, 0, 2, 0]


class RecordingModule(L.LightningModule):
    """Records the (sequence input rows) each epoch trains on; Lightning drives the loader."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[int, list[int]] = {}

    def training_step(self, batch, batch_idx):
        inputs, _targets, mask = batch
        self.seen.setdefault(self.current_epoch, []).extend(inputs[:, 0].tolist())
        return (self.weight * mask.sum()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_lightning_sets_the_epoch_so_each_epoch_trains_on_a_fresh_sample():
    rows = histories(np.random.default_rng(0).integers(2, 7, 60).tolist())
    rows = UserHistories(torch.arange(60).unsqueeze(1) * 10 + torch.arange(6), rows.lengths)  # row id first
    loader = epoch_sequences_loader(rows, max_targets=40, batch_size=16, seed=5)
    module = RecordingModule()
    trainer = L.Trainer(
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    trainer.fit(module, train_dataloaders=loader)
    epochs = [sorted(module.seen[epoch]) for epoch in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]
    sampler = loader.batch_sampler
    for epoch, seen in enumerate(epochs):
        sampler.set_epoch(epoch)
        expected = torch.cat(list(sampler), dim=1)[0] * 10
        assert seen == sorted(expected.tolist())
