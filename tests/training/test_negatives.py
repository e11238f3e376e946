import math

import pytest
import torch

from two_tower_recsys.training.negatives import POOL_POPULARITY_EXPONENT, MixedNegatives


def test_the_correction_is_the_log_of_how_often_each_candidate_is_expected_among_the_draws():
    negatives = MixedNegatives(torch.tensor([0, 9, 99]), pool_size=6, seed=0)
    weights = [(count + 1) ** POOL_POPULARITY_EXPONENT for count in (0, 9, 99)]
    pool_probability = [w / sum(weights) for w in weights]
    batch_probability = torch.tensor([0.0, 0.25, 0.75])
    candidates = torch.tensor([2, 1, 0, 2])
    corrected = negatives.log_expected_draws(candidates, batch_probability.log(), batch_size=4)
    expected = [math.log(4 * float(batch_probability[m]) + 6 * pool_probability[m]) for m in candidates]
    assert corrected.tolist() == pytest.approx(expected, rel=1e-6)


def test_pools_are_seeded_by_step_and_follow_the_smoothed_popularity():
    counts = torch.tensor([0, 9, 99, 999])
    negatives = MixedNegatives(counts, pool_size=200_000, seed=3)
    first = negatives.draw(step=5)
    assert torch.equal(first, negatives.draw(step=5))  # a resumed run draws the same pool
    assert not torch.equal(first, negatives.draw(step=6))
    assert not torch.equal(first, MixedNegatives(counts, pool_size=200_000, seed=4).draw(step=5))
    weights = (counts + 1.0) ** POOL_POPULARITY_EXPONENT
    frequencies = torch.bincount(first, minlength=4) / len(first)
    # 200k draws: the standard error of each frequency is below 0.0012
    assert torch.allclose(frequencies, (weights / weights.sum()).float(), atol=0.005)
    assert int(torch.bincount(first, minlength=4)[0]) > 0  # never a target, still drawn


def test_one_over_the_expected_draws_spreads_smoothing_evenly_over_the_catalogue():
    """The weights the training step gives ``mixed_softmax_loss``'s smoothing (1 / expected draws)
    turn the candidates' popularity-skewed spread into an estimate of the full softmax's even one."""
    generator = torch.Generator().manual_seed(0)
    counts = torch.tensor([0, 1, 3, 10, 30, 100, 300, 1000])
    batch_probability = counts / counts.sum()
    batch, pool = 100_000, 100_000  # many draws: the estimate's error is far below the tolerance
    negatives = MixedNegatives(counts, pool_size=pool, seed=1)
    batch_movies = torch.multinomial(batch_probability, batch, replacement=True, generator=generator)
    candidates = torch.cat([batch_movies, negatives.draw(0)])
    log_expected = negatives.log_expected_draws(candidates, batch_probability.log(), batch_size=batch)
    share = torch.bincount(candidates, weights=torch.exp(-log_expected), minlength=8)
    share /= share.sum()
    assert torch.allclose(share, torch.full((8,), 1 / 8, dtype=share.dtype), atol=0.01)
    unweighted = torch.bincount(candidates, minlength=8) / len(candidates)
    assert float(unweighted[-1]) > 0.4  # what an even spread over the candidates would give instead
