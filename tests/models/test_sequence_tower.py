import pytest
import torch
from torch import nn

from two_tower_recsys.models.components.sequence_tower import SequenceTower
from two_tower_recsys.training.module import TwoTowerModule

MODEL = {"user_tower": "sequence", "max_history": 8, "n_blocks": 2, "n_heads": 2, "dropout": 0.3}
ADAMW = {"optimizer": "adamw", "weight_decay": 0.1}


def tower(max_history=8, dim=16):
    torch.manual_seed(0)
    return SequenceTower(
        nn.Embedding(30, dim), max_history=max_history, n_blocks=2, n_heads=2, dropout=0.3
    ).eval()


def test_output_at_each_position_reads_only_that_prefix():
    model = tower()
    history = torch.randint(0, 30, (4, 8))
    changed = history.clone()
    changed[:, 5:] = (changed[:, 5:] + 7) % 30  # rewrite the future of position 4
    with torch.no_grad():
        before, after = model.encode(history), model.encode(changed)
    assert torch.allclose(before[:, :5], after[:, :5], atol=1e-6)
    assert not torch.allclose(before[:, 5:], after[:, 5:], atol=1e-3)


def test_user_vector_ignores_the_padding_after_each_rows_length():
    model = tower()
    history = torch.randint(0, 30, (3, 8))
    lengths = torch.tensor([8, 3, 1])
    junk = history.clone()
    junk[1, 3:] = 29
    junk[2, 1:] = 0
    with torch.no_grad():
        vectors = model(history, lengths)
        assert torch.allclose(model(junk, lengths), vectors, atol=1e-6)
        # the same as reading the unpadded row alone
        assert torch.allclose(model(history[1:2, :3], lengths[1:2]), vectors[1:2], atol=1e-6)
    batched = model.embed_histories(history, lengths, batch_size=2)
    assert torch.allclose(batched, vectors, atol=1e-6)


def test_embed_histories_switches_dropout_off_and_restores_the_mode():
    model = tower().train()
    history, lengths = torch.randint(0, 30, (5, 8)), torch.full((5,), 8)
    first = model.embed_histories(history, lengths)
    assert torch.equal(first, model.embed_histories(history, lengths))
    assert model.training


def test_longer_history_than_the_positions_is_refused():
    with pytest.raises(ValueError, match="longer than max_history=4"):
        tower(max_history=4).encode(torch.zeros(1, 5, dtype=torch.long))


def test_module_shares_the_movie_table_between_the_towers():
    module = TwoTowerModule(n_users=10, n_items=30, model=MODEL, optimizer=ADAMW)
    net = module.net
    assert net.user_tower.item_embedding.weight is net.item_tower.embedding.weight
    assert sum(p is net.item_tower.embedding.weight for p in module.parameters()) == 1
    with pytest.raises(TypeError, match="scores histories"):
        net(torch.tensor([0]), torch.tensor([1]))
