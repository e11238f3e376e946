import pytest
import torch

from two_tower_recsys.training.optim import LazyAdam


def run_steps(optimizer_factory, sparse, steps=5):
    torch.manual_seed(0)
    table = torch.nn.Embedding(20, 4, sparse=sparse)
    dense = torch.nn.Linear(4, 1)
    optimizer = optimizer_factory([*table.parameters(), *dense.parameters()])
    batches = [torch.tensor([1, 3, 3, 7]), torch.tensor([2, 3]), torch.tensor([7, 7, 19])]
    for step in range(steps):
        rows = batches[step % len(batches)]
        loss = dense(table(rows)).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return table.weight.detach(), dense.weight.detach()


def test_dense_gradients_follow_torch_adam_exactly():
    ours = run_steps(lambda p: LazyAdam(p, lr=0.05), sparse=False)
    reference = run_steps(lambda p: torch.optim.Adam(p, lr=0.05), sparse=False)
    for mine, theirs in zip(ours, reference, strict=True):
        assert torch.allclose(mine, theirs, atol=1e-6)


def test_sparse_gradients_follow_sparse_adam_and_leave_untouched_rows_alone():
    def mixed_reference(params):
        table_weight, *dense_params = params
        return _Pair(torch.optim.SparseAdam([table_weight], lr=0.05), torch.optim.Adam(dense_params, lr=0.05))

    ours = run_steps(lambda p: LazyAdam(p, lr=0.05), sparse=True)
    reference = run_steps(mixed_reference, sparse=True)
    for mine, theirs in zip(ours, reference, strict=True):
        assert torch.allclose(mine, theirs, atol=1e-6)
    torch.manual_seed(0)
    initial = torch.nn.Embedding(20, 4).weight.detach()
    untouched = [row for row in range(20) if row not in {1, 2, 3, 7, 19}]
    assert torch.equal(ours[0][untouched], initial[untouched])


class _Pair:
    """Two optimizers stepping together (the reference for a mixed sparse/dense model)."""

    def __init__(self, first, second):
        self.optimizers = (first, second)

    def zero_grad(self):
        for optimizer in self.optimizers:
            optimizer.zero_grad()

    def step(self):
        for optimizer in self.optimizers:
            optimizer.step()


def test_rejects_a_non_positive_learning_rate():
    with pytest.raises(ValueError, match="learning rate must be positive"):
        LazyAdam([torch.nn.Parameter(torch.zeros(1))], lr=0)
