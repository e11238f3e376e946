"""Sampling without replacement: exact counts, distinct movies, and a fallback that matches the rounds."""

from __future__ import annotations

import numpy as np
import pytest

from two_tower_recsys.data.synthetic import sampling
from two_tower_recsys.data.synthetic.audience import make_audience
from two_tower_recsys.data.synthetic.catalogue import make_catalogue
from two_tower_recsys.settings import SyntheticSpec

SPEC = SyntheticSpec(users=400, movies=300, ratings=24_000, clusters=8)
USERS = np.arange(100, 400)  # a later block of users, as in a chunk: owners index into it


def sample(monkeypatch: pytest.MonkeyPatch, rejection_rounds: int) -> np.ndarray:
    """Sample every user in USERS, check the sample is exact, return which choices are in-taste."""
    monkeypatch.setattr(sampling, "REJECTION_ROUNDS", rejection_rounds)
    catalogue = make_catalogue(SPEC, np.random.default_rng(0))
    audience = make_audience(SPEC, catalogue, np.random.default_rng(1))
    owner, movie = sampling.sample_distinct_movies(USERS, catalogue, audience, np.random.default_rng(2))
    assert np.array_equal(np.bincount(owner, minlength=len(USERS)), audience.activity[USERS])
    assert (np.diff(owner * SPEC.movies + movie) > 0).all()  # sorted by user then movie: no repeats
    return audience.primary[USERS[owner]] == catalogue.cluster[movie]


@pytest.mark.parametrize("rejection_rounds", [sampling.REJECTION_ROUNDS, 0], ids=["rounds", "race-only"])
def test_each_user_gets_exactly_its_activity_in_distinct_movies(monkeypatch, rejection_rounds):
    sample(monkeypatch, rejection_rounds)


def test_the_exact_fallback_continues_the_same_sample(monkeypatch):
    """The exponential race alone draws as the rounds do: the same share of primary-cluster movies."""
    with_rounds = sample(monkeypatch, sampling.REJECTION_ROUNDS)
    race_only = sample(monkeypatch, 0)  # ~0.47 either way; ~0.26 if it ignored the mixture
    assert abs(with_rounds.mean() - race_only.mean()) < 0.02, (with_rounds.mean(), race_only.mean())
