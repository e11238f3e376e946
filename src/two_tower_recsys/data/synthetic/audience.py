"""The users: activity, taste clusters and their mixture, leniency, star habit, active window.

Each user has a power-law number of ratings (exactly ``spec.ratings`` in all), a primary taste
cluster and a neighbouring secondary one, a taste strength, a leniency, a whole- or half-star habit
and an active time window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from two_tower_recsys.data.synthetic.catalogue import Catalogue
from two_tower_recsys.settings import SyntheticSpec

ACTIVITY_FLOOR = 20  # MovieLens keeps users with >= 20 ratings; less where ratings/user is small
ACTIVITY_TAIL_SHAPE = 1.8  # Lomax shape of ratings beyond the floor: ML-20M's mean/median is ~2.6
ACTIVITY_CAP_SHARE = 0.35  # the heaviest ML-20M user rated 35% of the catalogue
TASTE_STRENGTH_BETA = (4.0, 2.0)  # share of choices made by taste rather than popularity, mean 2/3
TASTE_STRENGTH_MAX = 0.95  # every movie keeps some chance: sampling never runs out of candidates
SECONDARY_SHARE_RANGE = (0.15, 0.45)  # share of taste-driven choices from the secondary cluster
SECONDARY_OFFSETS = (-2, -1, 1, 2)  # secondary cluster = a neighbour of the primary on a ring, so
#                                     the drift is shared structure a model can learn
LENIENCY_SD = 0.4  # stars: some users rate everything higher than others
HALF_STAR_USERS = 0.5  # share of users who use half stars: ~25% of MovieLens ratings are x.5

# --- active windows -----------------------------------------------------------------------------
FIRST_TIMESTAMP = 789_652_009  # 1995-01-09, ML-20M's first rating
LAST_TIMESTAMP = 1_427_784_002  # 2015-03-31, ML-20M's last rating
WINDOW_MEDIAN_S = 7 * 86_400  # many users rate in a burst, a few over years
WINDOW_LOG_SD = 2.5  # log-seconds: ~6% of users are active for more than a year
SECONDS_PER_RATING = 30  # a window is at least this long per rating


@dataclass(frozen=True)
class Audience:
    """The users' latent structure, indexed by user (id - 1)."""

    activity: np.ndarray  # number of ratings, sums to spec.ratings
    primary: np.ndarray  # home taste cluster
    secondary: np.ndarray  # the cluster the user's taste drifts towards
    mixture: np.ndarray  # (users, 3): chance a choice follows popularity / primary / secondary
    leniency: np.ndarray  # stars added to every rating of the user
    half_stars: np.ndarray  # bool: rates in half stars
    window_start: np.ndarray  # unix seconds
    window_length: np.ndarray  # seconds


def make_audience(spec: SyntheticSpec, catalogue: Catalogue, rng: np.random.Generator) -> Audience:
    users, clusters = spec.users, spec.clusters
    activity = _user_activity(spec, rng)
    # Demand follows supply: a cluster attracts users in proportion to its share of popularity.
    cluster_mass = np.bincount(catalogue.cluster, weights=catalogue.popularity, minlength=clusters)
    primary = rng.choice(clusters, size=users, p=cluster_mass / cluster_mass.sum())
    secondary = (primary + rng.choice(SECONDARY_OFFSETS, size=users)) % clusters
    wrapped = (secondary == primary) & (clusters > 1)  # with 2 clusters, an offset of 2 wraps round
    secondary[wrapped] = (primary[wrapped] + 1) % clusters
    strength = np.minimum(rng.beta(*TASTE_STRENGTH_BETA, size=users), TASTE_STRENGTH_MAX)
    secondary_share = rng.uniform(*SECONDARY_SHARE_RANGE, size=users)
    mixture = np.stack(
        [1.0 - strength, strength * (1.0 - secondary_share), strength * secondary_share], axis=1
    )
    span = LAST_TIMESTAMP - FIRST_TIMESTAMP
    length = np.exp(rng.normal(np.log(WINDOW_MEDIAN_S), WINDOW_LOG_SD, size=users))
    length = np.clip(length, SECONDS_PER_RATING * activity, span).astype(np.int64)
    start = FIRST_TIMESTAMP + (rng.random(users) * (span - length)).astype(np.int64)
    return Audience(
        activity=activity,
        primary=primary,
        secondary=secondary,
        mixture=mixture,
        leniency=rng.normal(0.0, LENIENCY_SD, size=users),
        half_stars=rng.random(users) < HALF_STAR_USERS,
        window_start=start,
        window_length=length,
    )


def _user_activity(spec: SyntheticSpec, rng: np.random.Generator) -> np.ndarray:
    """Ratings per user: a floor plus a power-law tail, capped, summing exactly to spec.ratings."""
    floor = max(1, min(ACTIVITY_FLOOR, spec.ratings // (2 * spec.users)))
    cap = min(spec.movies, max(floor, math.ceil(ACTIVITY_CAP_SHARE * spec.movies)))
    if cap * spec.users < spec.ratings:  # denser than MovieLens: heavy users may rate everything
        cap = spec.movies
    weights = rng.pareto(ACTIVITY_TAIL_SHAPE, size=spec.users) + 1e-9
    return floor + _water_fill(weights, spec.ratings - floor * spec.users, cap - floor)


def _water_fill(weights: np.ndarray, total: int, cap: int) -> np.ndarray:
    """Integers proportional to ``weights``, each at most ``cap``, summing exactly to ``total``."""
    capped = np.zeros(len(weights), dtype=bool)
    while True:  # each pass caps at least one more user; a handful of passes in practice
        free_weight = np.where(capped, 0.0, weights)
        left = total - cap * int(capped.sum())
        share = left * free_weight / free_weight.sum() if left > 0 else np.zeros(len(weights))
        over = ~capped & (share >= cap)
        if not over.any():
            break
        capped |= over
    exact = np.where(capped, float(cap), share)
    counts = np.floor(exact).astype(np.int64)
    fraction = np.where(counts < cap, exact - counts, -1.0)
    # Largest remainders get the leftover units; the stable sort keeps this deterministic.
    counts[np.argsort(-fraction, kind="stable")[: total - int(counts.sum())]] += 1
    return counts
