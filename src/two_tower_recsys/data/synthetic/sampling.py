"""Each user's movies: a weighted sample without replacement from the user's mixture of global
popularity, the primary cluster and the secondary cluster."""

from __future__ import annotations

import numpy as np

from two_tower_recsys.data.synthetic.audience import Audience
from two_tower_recsys.data.synthetic.catalogue import Catalogue

OVERDRAW = 1.2  # draws per missing movie, on top of the expected share of repeats
REJECTION_ROUNDS = 6  # draw-and-deduplicate rounds before the exact fallback
# A user whose next round would need more draws than this share of the catalogue finishes in the
# fallback instead, which scores every movie once: cheaper than drawing mostly repeats.
MAX_DRAWS_CATALOGUE_SHARE = 0.1
FALLBACK_BLOCK_CELLS = 1 << 22  # users x movies scored at once by the fallback (16 MB of float32)


def sample_distinct_movies(
    users: np.ndarray, catalogue: Catalogue, audience: Audience, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """For each user, ``activity`` distinct movies drawn from the user's mixture without replacement.

    Sequential weighted sampling without replacement (draw, skip repeats) done in vectorised
    rounds: each round draws for every user still short, sized by the probability mass the user has
    not chosen yet, and keeps new movies in draw order up to the quota. Users for whom repeats
    would dominate finish with an exact exponential race over their unchosen movies.
    Returns (index into ``users``, movie) pairs sorted by user then movie.
    """
    movies = len(catalogue.popularity)
    deficit = audience.activity[users].astype(np.int64)
    chosen = np.empty(0, dtype=np.int64)  # sorted keys: local user * movies + movie
    chosen_mass = np.zeros(len(users))
    max_draws = MAX_DRAWS_CATALOGUE_SHARE * movies
    for _ in range(REJECTION_ROUNDS):
        unchosen_mass = np.maximum(1.0 - chosen_mass, 1e-12)
        draws = np.ceil(deficit / unchosen_mass * OVERDRAW) + 1
        drawing = np.flatnonzero((deficit > 0) & (draws <= max_draws))
        if drawing.size == 0:
            break
        owner = np.repeat(drawing, draws[drawing].astype(np.int64))
        movie = _draw_movies(users[owner], catalogue, audience, rng)
        accepted = _accept_in_draw_order(owner * movies + movie, chosen, deficit, movies)
        chosen = np.sort(np.concatenate([chosen, accepted]), kind="stable")  # merges two sorted runs
        accepted_owner, accepted_movie = np.divmod(accepted, movies)
        mass = _choice_probability(users[accepted_owner], accepted_movie, catalogue, audience)
        chosen_mass += np.bincount(accepted_owner, weights=mass, minlength=len(users))
        deficit -= np.bincount(accepted_owner, minlength=len(users))
    if deficit.any():
        accepted = _race_top_up(users, deficit, chosen, catalogue, audience, rng)
        chosen = np.sort(np.concatenate([chosen, accepted]))
    return np.divmod(chosen, movies)


def _draw_movies(
    user: np.ndarray, catalogue: Catalogue, audience: Audience, rng: np.random.Generator
) -> np.ndarray:
    """One movie per entry of ``user`` from that user's popularity/primary/secondary mixture."""
    weights = audience.mixture[user]
    pick = rng.random(len(user))
    segment = np.where(
        pick < weights[:, 0],
        catalogue.clusters,  # the global-popularity segment
        np.where(pick < weights[:, 0] + weights[:, 1], audience.primary[user], audience.secondary[user]),
    )
    position = np.searchsorted(catalogue.choice_cdf, segment + rng.random(len(user)), side="right")
    return catalogue.choice_movie[position]


def _choice_probability(
    user: np.ndarray, movie: np.ndarray, catalogue: Catalogue, audience: Audience
) -> np.ndarray:
    """Probability that one draw of ``user`` is ``movie`` (elementwise)."""
    weights = audience.mixture[user]
    home = catalogue.cluster[movie]
    cluster_weight = weights[:, 1] * (home == audience.primary[user]) + weights[:, 2] * (
        home == audience.secondary[user]
    )
    return weights[:, 0] * catalogue.popularity[movie] + cluster_weight * catalogue.in_cluster[movie]


def _accept_in_draw_order(
    keys: np.ndarray, chosen: np.ndarray, deficit: np.ndarray, movies: int
) -> np.ndarray:
    """The new keys each user keeps: first occurrences not chosen before, in draw order, up to its
    deficit. Returned sorted."""
    keys, first_draw = np.unique(keys, return_index=True)
    if chosen.size:
        position = np.minimum(np.searchsorted(chosen, keys), chosen.size - 1)
        fresh = chosen[position] != keys
        keys, first_draw = keys[fresh], first_draw[fresh]
    owner = keys // movies
    in_draw_order = np.lexsort((first_draw, owner))
    sorted_owner = owner[in_draw_order]
    rank = np.arange(len(keys)) - np.searchsorted(sorted_owner, sorted_owner, side="left")
    keep = in_draw_order[rank < deficit[sorted_owner]]
    return keys[np.sort(keep)]


def _race_top_up(
    users: np.ndarray,
    deficit: np.ndarray,
    chosen: np.ndarray,
    catalogue: Catalogue,
    audience: Audience,
    rng: np.random.Generator,
) -> np.ndarray:
    """Exact completion for users still short: the ``deficit`` unchosen movies with the smallest
    Exp(1) / probability (an exponential race, i.e. Gumbel-top-k), which continues the sequential
    sample without replacement. Returns the accepted keys."""
    movies = len(catalogue.popularity)
    # Blocks of users with similar deficits, so each block's top-k is barely larger than needed.
    short = np.flatnonzero(deficit)[np.argsort(deficit[deficit > 0], kind="stable")]
    rows_per_block = max(1, FALLBACK_BLOCK_CELLS // movies)
    chosen_owner, chosen_movie = np.divmod(chosen, movies)
    row_of = np.full(len(users), -1)
    accepted = []
    for block_start in range(0, len(short), rows_per_block):  # blocks of users, not single users
        block = short[block_start : block_start + rows_per_block]
        row_of[block] = np.arange(len(block))
        arrival = rng.standard_exponential(size=(len(block), movies), dtype=np.float32)
        arrival /= _choice_probability_rows(users[block], catalogue, audience)
        row = row_of[chosen_owner]
        arrival[row[row >= 0], chosen_movie[row >= 0]] = np.inf
        row_of[block] = -1
        wanted = deficit[block]
        first = _first_columns(arrival, int(wanted.max()))
        take = np.arange(first.shape[1]) < wanted[:, None]
        accepted.append(np.repeat(block, wanted) * movies + first[take])
    return np.concatenate(accepted)


def _choice_probability_rows(user: np.ndarray, catalogue: Catalogue, audience: Audience) -> np.ndarray:
    """(len(user), movies) matrix of each user's probability of drawing each movie."""
    weights = audience.mixture[user].astype(np.float32)
    home = catalogue.cluster[None, :]
    probability = weights[:, 0:1] * catalogue.popularity.astype(np.float32)
    in_cluster = catalogue.in_cluster.astype(np.float32)
    probability += np.where(home == audience.primary[user, None], weights[:, 1:2] * in_cluster, 0.0)
    probability += np.where(home == audience.secondary[user, None], weights[:, 2:3] * in_cluster, 0.0)
    return probability


def _first_columns(arrival: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` smallest values, smallest first."""
    if k < arrival.shape[1]:
        candidates = np.argpartition(arrival, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(arrival.shape[1]), arrival.shape)
    order = np.argsort(np.take_along_axis(arrival, candidates, axis=1), axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1)
