"""Mixed negative sampling (Yang et al., WWW 2020): the batch's movies plus a pool drawn per step.

Each step's candidates, shared by every row of the batch, are the B movies of the batch (drawn,
in effect, from the targets' frequencies p) followed by a pool of S movies drawn with
replacement from a smoothed popularity distribution q ∝ (count + 1)^0.75: popular movies are
drawn more than uniformly, so the pool holds the hard negatives, but less than in the batch, so
the long tail is pushed down too (the batch alone never shows a movie that is rarely a target;
the + 1 gives every movie, even one that is never a target, a chance).

logQ correction. The candidates are B + S draws from two distributions, so a movie y is expected
``B p(y) + S q(y)`` times among them, whichever part it lands in. Every candidate's logit,
the positive's included, has ``log(B p(y) + S q(y))`` subtracted: with it the candidates'
exponentials, each weighted by 1 / that expectation, are an unbiased estimate of the catalogue's
softmax normaliser (multiple importance sampling with the balance heuristic). Correcting each
part by its own probability alone (``log p`` for the batch, ``log q`` for the pool, as the
in-batch loss does with no pool) would count every movie twice over, once per part, with
weights unrelated to how often it is really drawn; for S = 0 the combined correction is the
in-batch one (plus a constant, which the softmax ignores).

The pool depends only on (seed, step): a run is reproducible and a resumed run draws the same
pools. Every process of a multi-device run draws the same pool (each has its own batch).
"""

from __future__ import annotations

import math

import numpy as np
import torch

POOL_POPULARITY_EXPONENT = 0.75  # word2vec's smoothing of the unigram distribution


class MixedNegatives(torch.nn.Module):
    """Draws each step's pool on the module's device and corrects the candidates' logits."""

    def __init__(self, target_counts: np.ndarray | torch.Tensor, pool_size: int, seed: int):
        """``target_counts``: how often each movie is a training target (what p is made of)."""
        super().__init__()
        if pool_size < 1:
            raise ValueError(f"pool_size must be positive, got {pool_size}")
        self.pool_size, self.seed = pool_size, seed
        counts = torch.as_tensor(target_counts, dtype=torch.float64)
        weights = (counts + 1.0).pow(POOL_POPULARITY_EXPONENT)
        pool_probability = weights / weights.sum()
        # A buffer, so that it follows the module to its device; not saved (derived from the data).
        self.register_buffer("pool_probability", pool_probability.float(), persistent=False)
        self.register_buffer("log_pool_probability", pool_probability.log().float(), persistent=False)

    def draw(self, step: int) -> torch.Tensor:
        """The pool of training step ``step``: ``pool_size`` movie indices, with replacement."""
        device = self.pool_probability.device
        generator = torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + step)
        return torch.multinomial(self.pool_probability, self.pool_size, replacement=True, generator=generator)

    def log_expected_draws(
        self, candidate_idx: torch.Tensor, log_batch_probability: torch.Tensor, batch_size: int
    ) -> torch.Tensor:
        """``log(B p(y) + S q(y))`` for each candidate movie y (the module docstring says why).

        ``log_batch_probability``: log p of every catalogue movie; ``batch_size``: B."""
        from_batch = log_batch_probability[candidate_idx] + math.log(batch_size)
        from_pool = self.log_pool_probability[candidate_idx] + math.log(self.pool_size)
        return torch.logaddexp(from_batch, from_pool)
