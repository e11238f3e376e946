import numpy as np
import torch

from two_tower_recsys.training.pairs import EpochSampleBatches, epoch_pairs_loader


def drawn(sampler):
    return torch.cat(list(sampler))


def test_each_epoch_draws_a_fresh_seeded_sample_from_all_pairs():
    sampler = EpochSampleBatches(n_pairs=1000, max_pairs=100, batch_size=32, seed=7)
    first = drawn(sampler)
    assert len(first) == 100 and len(set(first.tolist())) == 100
    assert first.max() >= 100  # not the first N rows
    sampler.set_epoch(1)
    second = drawn(sampler)
    assert set(first.tolist()) != set(second.tolist())
    sampler.set_epoch(0)
    assert torch.equal(drawn(sampler), first)  # depends only on (seed, epoch)
    assert len(sampler) == 4  # ceil(100 / 32)


def test_small_datasets_use_every_pair_once_per_epoch():
    sampler = EpochSampleBatches(n_pairs=50, max_pairs=2_000_000, batch_size=16, seed=0)
    assert sorted(drawn(sampler).tolist()) == list(range(50))


def test_ddp_processes_get_equal_disjoint_shares_of_the_same_sample():
    shares = [drawn(EpochSampleBatches(101, 1000, 10, seed=3, world=(rank, 2))) for rank in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 50
    assert not set(shares[0].tolist()) & set(shares[1].tolist())
    assert len(EpochSampleBatches(101, 1000, 10, seed=3, world=(1, 2))) == 5


def test_loader_yields_user_and_item_batches():
    users = np.arange(10) * 10
    items = np.arange(10)
    loader = epoch_pairs_loader(users, items, max_pairs=10, batch_size=4, seed=0)
    batches = list(loader)
    assert [len(batch[0]) for batch in batches] == [4, 4, 2]
    for batch_users, batch_items in batches:
        assert torch.equal(batch_users, batch_items * 10)
