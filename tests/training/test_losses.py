import math

import pytest
import torch
from loss_reference import candidate_cross_entropy

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


def autograd_in_batch(users, items, item_idx, temperature, log_q):
    """The plain autograd formulation the hand-written gradients must reproduce."""
    logits = users @ items.T / temperature
    if log_q is not None:
        logits = logits - log_q[item_idx].unsqueeze(0)
    duplicates = item_idx.unsqueeze(0) == item_idx.unsqueeze(1)
    duplicates.fill_diagonal_(False)
    logits = logits.masked_fill(duplicates, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(item_idx)))


def gradients(loss_fn, *tensors):
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    loss = loss_fn(*leaves)
    (loss * 3.0).backward()  # a non-unit upstream gradient must be honoured
    return loss.detach(), [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("use_log_q", [False, True])
def test_in_batch_gradients_match_autograd(use_log_q):
    generator = torch.Generator().manual_seed(1)
    users = torch.randn(64, 8, generator=generator, dtype=torch.float64)
    items = torch.randn(64, 8, generator=generator, dtype=torch.float64)
    item_idx = torch.randint(0, 20, (64,), generator=generator)  # many repeats
    log_q = (
        torch.log_softmax(torch.randn(20, generator=generator, dtype=torch.float64), 0) if use_log_q else None
    )
    ours = gradients(
        lambda u, v: in_batch_softmax_loss(u, v, item_idx, temperature=0.7, log_q=log_q), users, items
    )
    reference = gradients(lambda u, v: autograd_in_batch(u, v, item_idx, 0.7, log_q), users, items)
    assert torch.allclose(ours[0], reference[0])
    for mine, theirs in zip(ours[1], reference[1], strict=True):
        assert torch.allclose(mine, theirs, atol=1e-12)


def test_full_softmax_gradients_match_autograd_across_chunks(monkeypatch):
    from two_tower_recsys.training import losses

    monkeypatch.setattr(losses, "FULL_SOFTMAX_CHUNK_ROWS", 7)  # several chunks, a ragged last one
    generator = torch.Generator().manual_seed(2)
    users = torch.randn(30, 5, generator=generator, dtype=torch.float64)
    catalogue = torch.randn(40, 5, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 40, (30,), generator=generator)
    ours = gradients(lambda u, c: full_softmax_loss(u, c, targets, temperature=0.5), users, catalogue)
    reference = gradients(
        lambda u, c: torch.nn.functional.cross_entropy(u @ c.T / 0.5, targets), users, catalogue
    )
    assert torch.allclose(ours[0], reference[0])
    for mine, theirs in zip(ours[1], reference[1], strict=True):
        assert torch.allclose(mine, theirs, atol=1e-12)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_full_softmax_with_hidden_movies_and_smoothing_matches_the_definition(monkeypatch, label_smoothing):
    from two_tower_recsys.training import losses

    monkeypatch.setattr(losses, "FULL_SOFTMAX_CHUNK_ROWS", 4)  # hidden pairs in several chunks
    generator = torch.Generator().manual_seed(3)
    users = torch.randn(10, 5, generator=generator, dtype=torch.float64)
    catalogue = torch.randn(12, 5, generator=generator, dtype=torch.float64)
    targets = torch.tensor([0, 3, 3, 7, 11, 2, 5, 5, 9, 1])
    hidden = {(0, 4), (0, 5), (1, 0), (3, 3), (5, 0), (5, 1), (5, 11), (9, 0), (9, 2)}
    rows, items = (torch.tensor(column) for column in zip(*sorted(hidden), strict=True))
    ours = gradients(
        lambda u, c: full_softmax_loss(
            u, c, targets, temperature=0.5, label_smoothing=label_smoothing, hidden=(rows, items)
        ),
        users,
        catalogue,
    )
    reference = gradients(
        lambda u, c: candidate_cross_entropy(u @ c.T / 0.5, targets, hidden, label_smoothing),
        users,
        catalogue,
    )
    assert float(ours[0]) == pytest.approx(float(reference[0]), rel=1e-12)
    for mine, theirs in zip(ours[1], reference[1], strict=True):
        assert torch.allclose(mine, theirs, atol=1e-12)


def test_label_smoothing_moves_the_loss_and_is_bounded():
    users = torch.tensor([[1.0, 0.0]])
    catalogue = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    plain = full_softmax_loss(users, catalogue, torch.tensor([0]))
    smoothed = full_softmax_loss(users, catalogue, torch.tensor([0]), label_smoothing=0.3)
    logits = [2.0, 0.0, 1.0]
    log_norm = math.log(sum(math.exp(v) for v in logits))
    assert float(smoothed) == pytest.approx(log_norm - 0.7 * 2.0 - 0.3 * sum(logits) / 3, rel=1e-6)
    assert float(smoothed) > float(plain)  # the positive is the best logit: smoothing costs here
    with pytest.raises(ValueError, match="label_smoothing"):
        full_softmax_loss(users, catalogue, torch.tensor([0]), label_smoothing=1.0)


def test_duplicate_positions_lists_every_other_occurrence():
    from two_tower_recsys.training.losses import duplicate_positions

    rows, cols = duplicate_positions(torch.tensor([5, 2, 5, 9, 5, 2]))
    pairs = sorted(zip(rows.tolist(), cols.tolist(), strict=True))
    assert pairs == [(0, 2), (0, 4), (1, 5), (2, 0), (2, 4), (4, 0), (4, 2), (5, 1)]
    empty_rows, _ = duplicate_positions(torch.tensor([1, 2, 3]))
    assert len(empty_rows) == 0


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("with_log_q", [False, True])
@pytest.mark.parametrize("weighted_smoothing", [False, True])
def test_mixed_softmax_loss_and_gradients_match_autograd_on_the_definition(
    label_smoothing, with_log_q, weighted_smoothing
):
    from loss_reference import shared_candidates_not_offered

    generator = torch.Generator().manual_seed(4)
    batch, pool, n_movies = 12, 15, 10  # few movies: repeats within the batch, the pool and across
    targets = torch.tensor([0, 3, 3, 7, 9, 2, 5, 5, 9, 1, 3, 8])
    candidates = torch.cat([targets, torch.randint(0, n_movies, (pool,), generator=generator)])
    users = torch.randn(batch, 5, generator=generator, dtype=torch.float64)
    candidate_emb = torch.randn(batch + pool, 5, generator=generator, dtype=torch.float64)
    # earlier positives: never the row's own target; some are in the batch, some only in the pool
    hidden = {(0, 4), (0, 5), (1, 0), (3, 3), (5, 0), (5, 1), (5, 9), (9, 0), (9, 2), (11, 6)}
    rows, movies = (torch.tensor(column) for column in zip(*sorted(hidden), strict=True))
    log_q = torch.randn(batch + pool, generator=generator, dtype=torch.float64) if with_log_q else None
    weights = None
    if weighted_smoothing:  # spread over 1 / (expected appearances): anything positive, far from even
        weights = torch.rand(batch + pool, generator=generator, dtype=torch.float64).mul(10).add(0.1)
    not_offered = shared_candidates_not_offered(candidates, batch, hidden)
    accidental_hits_in_pool = {(r, c) for r, c in not_offered if c >= batch and candidates[c] == targets[r]}
    assert accidental_hits_in_pool and len(not_offered) > len(accidental_hits_in_pool)  # the cases are there

    assert_mixed_loss_matches_the_definition(
        users,
        candidate_emb,
        candidates,
        (rows, movies),
        not_offered,
        label_smoothing,
        log_q,
        weights,
        1e-12,
        1e-10,
    )


def test_mixed_softmax_at_the_ml20m_shape_with_the_default_pool_matches_autograd():
    """The shape the README's ML-20M advice trains at: 27,278 movies with a popularity skew, the
    recipe's batch of 256, the default pool drawn and corrected by ``MixedNegatives`` as the
    training step does, label smoothing 0.2 over 1 / expected draws, 20 earlier positives hidden
    per row."""
    from loss_reference import shared_candidates_not_offered

    from two_tower_recsys.settings import ModelConfig
    from two_tower_recsys.training.negatives import MixedNegatives

    n_movies, batch, pool = 27_278, 256, ModelConfig().sampled_negatives
    generator = torch.Generator().manual_seed(7)
    counts = (1e5 / torch.arange(1, n_movies + 1, dtype=torch.float64)).floor()  # Zipf: repeats
    target_probability = counts / counts.sum()
    targets = torch.multinomial(target_probability, batch, replacement=True, generator=generator)
    negatives = MixedNegatives(counts, pool_size=pool, seed=0)
    candidates = torch.cat([targets, negatives.draw(step=0)])
    log_expected = negatives.log_expected_draws(candidates, target_probability.log().float(), batch).double()
    earlier = torch.multinomial(target_probability, 20 * batch, replacement=True, generator=generator)
    hidden = {(i // 20, movie) for i, movie in enumerate(earlier.tolist()) if movie != int(targets[i // 20])}
    rows, movies = (torch.tensor(column) for column in zip(*sorted(hidden), strict=True))
    not_offered = shared_candidates_not_offered(candidates, batch, hidden)
    pool_hits = {(r, c) for r, c in not_offered if c >= batch and candidates[c] == targets[r]}
    assert pool_hits and len(not_offered) > len(pool_hits)  # accidental hits and hidden movies in the pool
    users = torch.randn(batch, 64, generator=generator, dtype=torch.float64) * 0.3
    candidate_emb = torch.randn(batch + pool, 64, generator=generator, dtype=torch.float64) * 0.3
    weights = torch.exp(-log_expected)

    assert_mixed_loss_matches_the_definition(
        users, candidate_emb, candidates, (rows, movies), not_offered, 0.2, log_expected, weights, 1e-10, 1e-8
    )


def assert_mixed_loss_matches_the_definition(
    users,
    candidate_emb,
    candidates,
    hidden,
    not_offered,
    label_smoothing,
    log_q,
    weights,
    loss_rel,
    gradient_rtol,
):
    """Loss and both gradients of ``mixed_softmax_loss`` (temperature 0.5) against autograd on
    the definition: float64 throughout, so only the order of sums differs."""
    from two_tower_recsys.training.losses import mixed_softmax_loss

    def ours(u, c):
        return mixed_softmax_loss(
            u,
            c,
            candidates,
            temperature=0.5,
            label_smoothing=label_smoothing,
            log_q=log_q,
            hidden=hidden,
            smoothing_weights=weights,
        )

    def definition(u, c):
        logits = u @ c.T / 0.5
        if log_q is not None:
            logits = logits - log_q.unsqueeze(0)
        return candidate_cross_entropy(logits, torch.arange(len(u)), not_offered, label_smoothing, weights)

    mine, reference = gradients(ours, users, candidate_emb), gradients(definition, users, candidate_emb)
    assert float(mine[0]) == pytest.approx(float(reference[0]), rel=loss_rel)
    for got, expected in zip(mine[1], reference[1], strict=True):
        assert torch.allclose(got, expected, rtol=gradient_rtol, atol=1e-12)


def test_mixed_softmax_without_a_pool_is_the_in_batch_loss():
    from two_tower_recsys.training.losses import mixed_softmax_loss

    generator = torch.Generator().manual_seed(5)
    users = torch.randn(16, 4, generator=generator, dtype=torch.float64)
    items = torch.randn(16, 4, generator=generator, dtype=torch.float64)
    item_idx = torch.randint(0, 6, (16,), generator=generator)
    log_q = torch.log_softmax(torch.randn(6, generator=generator, dtype=torch.float64), 0)
    mixed = mixed_softmax_loss(users, items, item_idx, temperature=0.7, log_q=log_q[item_idx])
    in_batch = in_batch_softmax_loss(users, items, item_idx, temperature=0.7, log_q=log_q)
    assert float(mixed) == pytest.approx(float(in_batch), rel=1e-12)
