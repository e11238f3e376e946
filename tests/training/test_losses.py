import math

import pytest
import torch

from two_tower_recsys.training.losses import full_softmax_loss, in_batch_softmax_loss


def reference_in_batch_loss(users, items, item_idx, temperature, log_q):
    """One row at a time, straight from the definition."""
    total = 0.0
    for i in range(len(item_idx)):
        logits = []
        for j in range(len(item_idx)):
            if j != i and item_idx[j] == item_idx[i]:
                continue  # the same movie is not a negative for its own positive
            logit = float(users[i] @ items[j]) / temperature
            if log_q is not None:
                logit -= float(log_q[item_idx[j]])
            logits.append((j, logit))
        log_norm = math.log(sum(math.exp(value) for _, value in logits))
        positive = next(value for j, value in logits if j == i)
        total += log_norm - positive
    return total / len(item_idx)


@pytest.mark.parametrize("use_log_q", [False, True])
def test_in_batch_loss_matches_the_definition(use_log_q):
    generator = torch.Generator().manual_seed(0)
    users = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    items = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    item_idx = torch.tensor([3, 1, 3, 0, 2, 1])  # movies 3 and 1 appear twice
    log_q = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)) if use_log_q else None
    loss = in_batch_softmax_loss(users, items, item_idx, temperature=0.5, log_q=log_q)
    assert float(loss) == pytest.approx(reference_in_batch_loss(users, items, item_idx, 0.5, log_q), rel=1e-9)


def test_log_q_correction_is_subtracted_not_added():
    # Two movies, identical scores; movie 0 is sampled 9x as often. Subtracting log q raises the
    # rare movie's logit, so predicting the popular positive (row 0) costs more than without it.
    users = torch.zeros(2, 2)
    items = torch.zeros(2, 2)
    item_idx = torch.tensor([0, 1])
    log_q = torch.log(torch.tensor([0.9, 0.1]))
    plain = in_batch_softmax_loss(users, items, item_idx)
    corrected = in_batch_softmax_loss(users, items, item_idx, log_q=log_q)
    # row 0: -log(e^{-log .9} / (e^{-log .9} + e^{-log .1})) = -log(0.1); row 1: -log(0.9)
    expected = (-math.log(0.1) - math.log(0.9)) / 2
    assert float(corrected) == pytest.approx(expected, rel=1e-6)
    assert float(plain) == pytest.approx(math.log(2), rel=1e-6)


def test_duplicates_in_batch_are_not_negatives():
    users = torch.tensor([[1.0], [1.0]])
    items = torch.tensor([[5.0], [5.0]])
    # both rows are the same movie: with masking, each row's only candidate is its positive
    assert float(in_batch_softmax_loss(users, items, torch.tensor([7, 7]))) == pytest.approx(0.0, abs=1e-6)


def test_full_softmax_is_cross_entropy_over_the_catalogue():
    users = torch.tensor([[1.0, 0.0]])
    catalogue = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    loss = full_softmax_loss(users, catalogue, torch.tensor([2]), temperature=2.0)
    logits = [1.0, 0.0, 0.5]
    expected = math.log(sum(math.exp(v) for v in logits)) - logits[2]
    assert float(loss) == pytest.approx(expected, rel=1e-6)
