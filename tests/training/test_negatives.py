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
