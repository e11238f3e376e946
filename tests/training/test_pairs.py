"""The per-epoch pair sample, driven by a real Lightning Trainer (which calls ``set_epoch``)."""

import lightning as L
import numpy as np
import torch

from two_tower_recsys.training.pairs import EpochSample, EpochSampleBatches, epoch_pairs_loader


def drawn(batches):
    return torch.cat(list(batches))


class _PairRecorder(L.LightningModule):
    """The smallest trainable module: remembers which pair indices each epoch trained on."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.epochs: list[list[int]] = []

    def on_train_epoch_start(self) -> None:
        self.epochs.append([])

    def training_step(self, batch, batch_idx):
        users, _items = batch
        self.epochs[-1].extend(users.tolist())
        return (self.weight * users.float()).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def trained_samples(seed: int, *, n_pairs: int = 1000, max_pairs: int = 100, epochs: int = 4):
    pairs = np.arange(n_pairs)  # user_idx == row index, so a batch shows which rows it drew
    loader = epoch_pairs_loader(pairs, pairs, max_pairs=max_pairs, batch_size=32, seed=seed)
    module = _PairRecorder()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    trainer.fit(module, train_dataloaders=loader)
    return module.epochs


def test_the_trainer_draws_a_fresh_seeded_sample_every_epoch():
    epochs = trained_samples(seed=7)
    assert len(epochs) == 4 and all(len(sample) == len(set(sample)) == 100 for sample in epochs)
    assert len({frozenset(sample) for sample in epochs}) == 4  # a different sample each epoch
    assert len(set().union(*epochs)) > 300  # 4 x 100 from 1000: ~344 distinct expected
    assert trained_samples(seed=7) == epochs  # depends only on (seed, epoch)
    assert trained_samples(seed=8)[0] != epochs[0]


def test_small_datasets_use_every_pair_once_per_epoch_in_a_new_order():
    epochs = trained_samples(seed=0, n_pairs=50, max_pairs=2_000_000, epochs=2)
    assert [sorted(sample) for sample in epochs] == [list(range(50))] * 2
    assert epochs[0] != epochs[1]  # so the in-batch negatives differ too


def test_samples_come_from_all_pairs_not_the_first_rows():
    sample = drawn(EpochSampleBatches(EpochSample(n_pairs=1000, max_pairs=100, seed=7), batch_size=32))
    assert len(sample) == 100 and sample.max() >= 100
    assert len(EpochSampleBatches(EpochSample(1000, 100, seed=7), batch_size=32)) == 4  # ceil(100 / 32)


def test_ddp_processes_get_equal_disjoint_shares_of_the_same_sample():
    shares = [
        drawn(EpochSampleBatches(EpochSample(101, 1000, seed=3, world=(rank, 2)), 10)) for rank in (0, 1)
    ]
    assert len(shares[0]) == len(shares[1]) == 50
    assert not set(shares[0].tolist()) & set(shares[1].tolist())
    assert len(EpochSampleBatches(EpochSample(101, 1000, seed=3, world=(1, 2)), 10)) == 5


def test_loader_yields_user_and_item_batches():
    users = np.arange(10) * 10
    items = np.arange(10)
    loader = epoch_pairs_loader(users, items, max_pairs=10, batch_size=4, seed=0)
    batches = list(loader)
    assert [len(batch[0]) for batch in batches] == [4, 4, 2]
    for batch_users, batch_items in batches:
        assert torch.equal(batch_users, batch_items * 10)
