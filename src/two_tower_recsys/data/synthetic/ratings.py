"""The rating rows, chunk by chunk of users: the sampled movies, their stars and timestamps.

* stars: leniency + quality + cluster affinity + noise, rounded to stars, so in-cluster movies are
  mostly positives (>= 4): the signal a collaborative model finds and popularity lacks;
* time: primary-cluster movies come early in a user's window and secondary-cluster ones late, i.e.
  taste drifts, so a user's newest positive is not a random draw from the older ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from two_tower_recsys.data.synthetic.audience import Audience
from two_tower_recsys.data.synthetic.catalogue import Catalogue
from two_tower_recsys.data.synthetic.sampling import sample_distinct_movies

RATING_TEXT = pa.array([f"{steps / 2:.1f}" for steps in range(1, 11)])  # grouplens' "0.5" ... "5.0"
# Users are generated and written in chunks of this many ratings. Part of the output's definition
# (each chunk has its own random stream): changing it changes every zip, so bump
# writer.FORMAT_VERSION.
CHUNK_RATINGS = 1_000_000

# --- stars --------------------------------------------------------------------------------------
RATING_BASE = 3.55  # a typical user's mean before rounding: mean 3.5, 47% of ratings >= 4 (ML-20M: 3.53, 48%)
RATING_NOISE_SD = 0.8  # stars: equally matched movies still spread over about 3 stars
# Stars added by the movie's cluster (other, primary, secondary): a ~1 star gap makes most positives
# in-taste, while out-of-taste movies still reach 4 stars often enough to blur the clusters.
AFFINITY = np.array([-0.4, 0.55, 0.45])

# --- time ---------------------------------------------------------------------------------------
# A rating's position in its user's window is U ** exponent, by the movie's cluster (other,
# primary, secondary): primary movies come early (mean 0.38), secondary late (mean 0.67).
DRIFT_EXPONENT = np.array([1.0, 1.6, 0.5])


def rating_chunks(
    catalogue: Catalogue,
    audience: Audience,
    seed: np.random.SeedSequence,
    first_rating: np.ndarray,
) -> Iterator[pa.Table]:
    """Ratings of consecutive blocks of users, sorted by (userId, movieId) like grouplens'.

    Updates ``first_rating`` (the earliest timestamp of each movie) as it goes.
    """
    cumulative = np.cumsum(audience.activity)
    targets = np.arange(CHUNK_RATINGS, cumulative[-1], CHUNK_RATINGS)
    edges = np.unique(
        np.concatenate([[0], np.searchsorted(cumulative, targets, side="right"), [len(cumulative)]])
    )
    for (lo, hi), chunk_seed in zip(itertools.pairwise(edges), seed.spawn(len(edges) - 1), strict=True):
        rng = np.random.default_rng(chunk_seed)
        users = np.arange(lo, hi)
        owner, movie = sample_distinct_movies(users, catalogue, audience, rng)
        table = _rating_rows(users, owner, movie, catalogue, audience, rng)
        np.minimum.at(first_rating, movie, table.column("timestamp").to_numpy())
        yield table


def _rating_rows(
    users: np.ndarray,
    owner: np.ndarray,
    movie: np.ndarray,
    catalogue: Catalogue,
    audience: Audience,
    rng: np.random.Generator,
) -> pa.Table:
    user = users[owner]
    taste = _taste_match(user, movie, catalogue, audience)
    half_steps = _half_steps(owner, user, movie, taste, catalogue, audience, rng)
    position = rng.random(len(user)) ** DRIFT_EXPONENT[taste]
    timestamp = audience.window_start[user] + (position * audience.window_length[user]).astype(np.int64)
    return pa.table(
        {
            "userId": pa.array(user + 1, pa.int32()),
            "movieId": pa.array(movie + 1, pa.int32()),
            "rating": pa.DictionaryArray.from_arrays(pa.array(half_steps - 1), RATING_TEXT),
            "timestamp": pa.array(timestamp, pa.int64()),
        }
    )


def _taste_match(user: np.ndarray, movie: np.ndarray, catalogue: Catalogue, audience: Audience) -> np.ndarray:
    """0: the movie is from another cluster, 1: the user's primary cluster, 2: the secondary one."""
    home = catalogue.cluster[movie]
    secondary = np.where(home == audience.secondary[user], 2, 0)
    return np.where(home == audience.primary[user], 1, secondary)


def _half_steps(
    owner: np.ndarray,
    user: np.ndarray,
    movie: np.ndarray,
    taste: np.ndarray,
    catalogue: Catalogue,
    audience: Audience,
    rng: np.random.Generator,
) -> np.ndarray:
    """Ratings in half stars (1 = 0.5 ... 10 = 5.0).

    Quality and affinity are centred within each user, so a user's mean rating is set by leniency
    alone and the share of positives does not depend on how a dataset's users mix clusters (heavy
    users, who exhaust their clusters, would otherwise drag it down).
    """
    relative = catalogue.quality[movie] + AFFINITY[taste]
    counts = np.bincount(owner)
    user_mean = np.bincount(owner, weights=relative) / np.maximum(counts, 1)
    score = (
        RATING_BASE
        + audience.leniency[user]
        + relative
        - user_mean[owner]
        + rng.normal(0.0, RATING_NOISE_SD, size=len(user))
    )
    return np.where(
        audience.half_stars[user],
        np.clip(np.rint(2.0 * score), 1, 10),
        2.0 * np.clip(np.rint(score), 1, 5),
    ).astype(np.int8)
