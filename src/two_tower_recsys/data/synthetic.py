"""Synthetic MovieLens-format data whose structure is known: the project's offline default dataset.

:func:`write_synthetic_zip` writes ``<name>/ratings.csv``, ``<name>/movies.csv`` and
``<name>/generator.json`` in the grouplens layout, so
:func:`~two_tower_recsys.data.movielens.read_movielens_zip` reads it like a real release.
The generative story, vectorised numpy seeded by ``spec.seed`` (same spec, same bytes):

* movies: Zipf-Mandelbrot popularity over shuffled ids, a home taste cluster, a quality offset,
  genres typical of the cluster, a title from seeded word lists and a release year;
* users: a power-law number of ratings (exactly ``spec.ratings`` in all), a primary taste cluster
  and a neighbouring secondary one, a taste strength, a leniency and a whole- or half-star habit,
  and an active time window;
* choices: each user's movies are a weighted sample without replacement from a mixture of global
  popularity, the primary cluster and the secondary cluster;
* ratings: leniency + quality + cluster affinity + noise, rounded to stars, so in-cluster movies are
  mostly positives (>= 4): the signal a collaborative model finds and popularity lacks;
* time: primary-cluster movies come early in a user's window and secondary-cluster ones late, i.e.
  taste drifts, so a user's newest positive is not a random draw from the older ones.

Users are generated in chunks of about :data:`CHUNK_RATINGS` ratings, each streamed into the zip as
soon as it exists, which bounds memory at the ML-20M shape (20M ratings).
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import math
import sys
import zipfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from tqdm import tqdm

from two_tower_recsys.errors import ConfigError, DataError
from two_tower_recsys.settings import SyntheticSpec, settings_from_mapping
from two_tower_recsys.utils.fileio import atomic_path

SPEC_MEMBER = "generator.json"
FORMAT_VERSION = 1  # bump when the output for a given spec changes: cached zips are then rewritten
RATINGS_HEADER = b"userId,movieId,rating,timestamp\n"
MOVIES_HEADER = "movieId,title,genres\n"
RATING_TEXT = pa.array([f"{steps / 2:.1f}" for steps in range(1, 11)])  # grouplens' "0.5" ... "5.0"
ZIP_LEVEL = 1  # deflate level: 5x smaller than raw CSV at a fraction of level 6's time
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member dates keep the zip byte-identical across runs
# Users are generated and written in chunks of this many ratings. Part of the output's definition
# (each chunk has its own random stream): changing it changes every zip, so bump FORMAT_VERSION.
CHUNK_RATINGS = 1_000_000

# --- movies -------------------------------------------------------------------------------------
# Popularity of the movie at rank r is proportional to (r + offset) ** -exponent (Zipf-Mandelbrot).
# At the ML-20M shape, exponent 2.7 reproduces its item Gini (0.90 vs 0.903) and its median of a
# few dozen ratings per movie, with a tail of movies rated only a handful of times.
POPULARITY_EXPONENT = 2.7
TOP_MOVIE_REACH = 0.5  # the offset is set so that the most popular movie would reach about half
#                        the users, as in ML-20M (48%) and ml-latest-small (54%)
CLUSTER_SIZE_CONCENTRATION = 2.0  # Dirichlet over cluster sizes: clusters differ a few-fold, as genres
QUALITY_SD = 0.35  # stars: movies differ in average rating by about this much
QUALITY_POPULARITY_SLOPE = 0.15  # stars per sd of log popularity: popular movies rate a bit higher
SIGNATURE_GENRES = 2  # genres that characterise a cluster
SIGNATURE_GENRE_PROBABILITY = 0.7  # a movie carries each of its cluster's signature genres
STRAY_GENRE_PROBABILITY = 0.04  # and, rarely, any other: ~2.1 genres a movie (ml-latest-small: 2.3)
RELEASE_AGE_SCALE = 14.0  # years: the catalogue skews recent (exponential age before LAST_YEAR)
LAST_YEAR = 2015
FIRST_YEAR = 1915

# --- users --------------------------------------------------------------------------------------
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

# --- ratings ------------------------------------------------------------------------------------
RATING_BASE = 3.55  # a typical user's mean before rounding: mean 3.5, 47% of ratings >= 4 (ML-20M: 3.53, 48%)
RATING_NOISE_SD = 0.8  # stars: equally matched movies still spread over about 3 stars
# Stars added by the movie's cluster (other, primary, secondary): a ~1 star gap makes most positives
# in-taste, while out-of-taste movies still reach 4 stars often enough to blur the clusters.
AFFINITY = np.array([-0.4, 0.55, 0.45])

# --- time ---------------------------------------------------------------------------------------
FIRST_TIMESTAMP = 789_652_009  # 1995-01-09, ML-20M's first rating
LAST_TIMESTAMP = 1_427_784_002  # 2015-03-31, ML-20M's last rating
WINDOW_MEDIAN_S = 7 * 86_400  # many users rate in a burst, a few over years
WINDOW_LOG_SD = 2.5  # log-seconds: ~6% of users are active for more than a year
SECONDS_PER_RATING = 30  # a window is at least this long per rating
# A rating's position in its user's window is U ** exponent, by the movie's cluster (other,
# primary, secondary): primary movies come early (mean 0.38), secondary late (mean 0.67).
DRIFT_EXPONENT = np.array([1.0, 1.6, 0.5])

# --- sampling without replacement ---------------------------------------------------------------
OVERDRAW = 1.2  # draws per missing movie, on top of the expected share of repeats
REJECTION_ROUNDS = 6  # draw-and-deduplicate rounds before the exact fallback
# A user whose next round would need more draws than this share of the catalogue finishes in the
# fallback instead, which scores every movie once: cheaper than drawing mostly repeats.
MAX_DRAWS_CATALOGUE_SHARE = 0.1
FALLBACK_BLOCK_CELLS = 1 << 22  # users x movies scored at once by the fallback (16 MB of float32)

GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
ADJECTIVES = (
    "Crimson", "Silent", "Broken", "Golden", "Hidden", "Last", "Midnight", "Wild", "Frozen",
    "Electric", "Lonely", "Burning", "Distant", "Secret", "Savage", "Quiet", "Bitter", "Endless",
    "Fallen", "Velvet", "Iron", "Paper", "Scarlet", "Hollow", "Restless", "Little", "Dark", "Bright",
    "Lost", "Sweet", "Final", "Northern", "Eternal", "Dangerous", "Perfect", "Strange", "Blue",
    "Sacred", "Wicked", "Gentle", "Brave", "Forgotten", "Shattered", "Silver", "Twisted", "Lucky",
)  # fmt: skip
NOUNS = (
    "Harbor", "River", "Kingdom", "Shadow", "Garden", "Summer", "Highway", "Stranger", "Empire",
    "Island", "Heart", "Mirror", "Storm", "Horizon", "Promise", "Frontier", "Circus", "Station",
    "Orchard", "Letter", "Witness", "Echo", "Voyage", "Winter", "Dream", "Night", "City", "Road",
    "Moon", "Fire", "Game", "Hunter", "Detective", "Ghost", "Machine", "Journey", "Sister", "Bridge",
    "Desert", "Carnival", "Lighthouse", "Valley", "Prophecy", "Signal", "Outlaw", "Canyon", "Tide",
    "Symphony", "Wolf", "Crown", "Engine", "Paradise", "Alibi", "Rebel", "Archive", "Compass",
)  # fmt: skip
# Title patterns and how often each is used; grouplens moves a leading article to the end.
TITLE_PATTERN_WEIGHTS = np.array([0.4, 0.1, 0.2, 0.2, 0.1])


@dataclass(frozen=True)
class _Catalogue:
    """The movies' latent structure, indexed by movie (id - 1)."""

    clusters: int
    popularity: np.ndarray  # global choice probability, sums to 1
    cluster: np.ndarray  # home taste cluster
    in_cluster: np.ndarray  # choice probability within the home cluster, sums to 1 per cluster
    quality: np.ndarray  # stars added to every rating of the movie
    release_year: np.ndarray
    genres: np.ndarray  # (movies, len(GENRES)) bool
    # Inverse-cdf sampling table: positions [c, c+1] hold cluster c's cdf, [C, C+1] the global one.
    choice_cdf: np.ndarray
    choice_movie: np.ndarray  # the movie at each position of choice_cdf


@dataclass(frozen=True)
class _Audience:
    """The users' latent structure, indexed by user (id - 1)."""

    activity: np.ndarray  # number of ratings, sums to spec.ratings
    primary: np.ndarray  # home taste cluster
    secondary: np.ndarray  # the cluster the user's taste drifts towards
    mixture: np.ndarray  # (users, 3): chance a choice follows popularity / primary / secondary
    leniency: np.ndarray  # stars added to every rating of the user
    half_stars: np.ndarray  # bool: rates in half stars
    window_start: np.ndarray  # unix seconds
    window_length: np.ndarray  # seconds


def write_synthetic_zip(path: Path, spec: SyntheticSpec, *, name: str, progress: bool = True) -> None:
    """Write a MovieLens-format zip generated from ``spec`` to ``path`` (atomically)."""
    root = np.random.SeedSequence(spec.seed)
    movie_seed, title_seed, user_seed, chunk_seed = root.spawn(4)
    catalogue = _make_catalogue(spec, np.random.default_rng(movie_seed))
    audience = _make_audience(spec, catalogue, np.random.default_rng(user_seed))
    first_rating = np.full(spec.movies, LAST_TIMESTAMP, dtype=np.int64)
    bar = tqdm(
        total=spec.ratings, desc="synth", unit=" ratings", unit_scale=True, disable=not progress,
        file=sys.stderr,
    )  # fmt: skip
    with bar, atomic_path(Path(path)) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        with archive.open(_member(f"{name}/ratings.csv"), "w", force_zip64=True) as handle:
            handle.write(RATINGS_HEADER)
            chunks = _rating_chunks(catalogue, audience, chunk_seed, first_rating)
            _write_in_background(chunks, handle, bar)
        movies_csv = _movies_csv(catalogue, first_rating, np.random.default_rng(title_seed))
        archive.writestr(_member(f"{name}/movies.csv"), movies_csv)
        archive.writestr(_member(f"{name}/{SPEC_MEMBER}"), _spec_json(spec))


def read_synthetic_spec(path: Path) -> SyntheticSpec | None:
    """The spec recorded in a zip by :func:`write_synthetic_zip`.

    None for any other file, including a zip from another version of the generator: its data would
    differ from what this version writes for the same spec, so callers should regenerate it.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            member = next((m for m in archive.namelist() if m.rsplit("/", 1)[-1] == SPEC_MEMBER), None)
            if member is None:
                return None
            payload = json.loads(archive.read(member))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path} is a damaged zip file ({exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: {member} is not valid JSON ({exc})") from None
    if not isinstance(payload, dict) or "spec" not in payload:
        raise DataError(f"{path}: {member} has no 'spec' entry")
    if payload.get("format_version") != FORMAT_VERSION:
        return None
    try:
        return settings_from_mapping(SyntheticSpec, payload["spec"], f"{member} spec")
    except ConfigError as exc:
        raise DataError(f"{path}: {exc}") from None


# --- movies -------------------------------------------------------------------------------------


def _make_catalogue(spec: SyntheticSpec, rng: np.random.Generator) -> _Catalogue:
    movies, clusters = spec.movies, spec.clusters
    rank = rng.permutation(movies)  # popularity rank of each movie: ids carry no popularity
    mean_activity = spec.ratings / spec.users
    popularity = _zipf_mandelbrot(movies, top_share=-math.log1p(-TOP_MOVIE_REACH) / mean_activity)[rank]
    cluster = _assign_clusters(movies, clusters, rng)
    cluster_mass = np.bincount(cluster, weights=popularity, minlength=clusters)
    in_cluster = popularity / cluster_mass[cluster]
    log_popularity = np.log(popularity)
    standardised = (log_popularity - log_popularity.mean()) / max(log_popularity.std(), 1e-12)
    quality = QUALITY_POPULARITY_SLOPE * standardised + rng.normal(0.0, QUALITY_SD, movies)
    age = np.floor(rng.exponential(RELEASE_AGE_SCALE, movies)).astype(np.int64)
    release_year = np.maximum(LAST_YEAR - age, FIRST_YEAR)
    choice_cdf, choice_movie = _choice_table(popularity, in_cluster, cluster, clusters)
    return _Catalogue(
        clusters=clusters,
        popularity=popularity,
        cluster=cluster,
        in_cluster=in_cluster,
        quality=quality,
        release_year=release_year,
        genres=_assign_genres(cluster, clusters, rng),
        choice_cdf=choice_cdf,
        choice_movie=choice_movie,
    )


def _zipf_mandelbrot(movies: int, top_share: float) -> np.ndarray:
    """Probabilities by rank, (r + offset) ** -exponent, with the offset that gives the first rank
    ``top_share`` (bisection on a log scale; as flat as allowed where that share is unreachable)."""
    ranks = np.arange(1.0, movies + 1.0)

    def shares(offset: float) -> np.ndarray:
        weights = (ranks + offset) ** -POPULARITY_EXPONENT
        return weights / weights.sum()

    low, high = 0.0, math.log(1e9)  # log(1 + offset): the top share falls as the offset grows
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if shares(math.expm1(middle))[0] > top_share else (low, middle)
    return shares(math.expm1(high))


def _assign_clusters(movies: int, clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Home cluster of each movie: sizes vary, and every cluster has at least one movie."""
    sizes = rng.dirichlet(np.full(clusters, CLUSTER_SIZE_CONCENTRATION))
    cluster = rng.choice(clusters, size=movies, p=sizes)
    cluster[rng.permutation(movies)[:clusters]] = np.arange(clusters)
    return cluster.astype(np.int64)


def _choice_table(
    popularity: np.ndarray, in_cluster: np.ndarray, cluster: np.ndarray, clusters: int
) -> tuple[np.ndarray, np.ndarray]:
    """One sorted table for inverse-cdf draws from any cluster (segment c) or globally (segment C).

    A draw from segment s is ``searchsorted(cdf, s + U)``: one vectorised call serves every draw
    whatever its segment.
    """
    by_cluster = np.argsort(cluster, kind="stable")
    starts = np.searchsorted(cluster[by_cluster], np.arange(clusters))
    within = np.cumsum(in_cluster[by_cluster])
    # Restart the running sum at each cluster: subtract the total of the clusters before it.
    within -= np.repeat(np.concatenate([[0.0], within[starts[1:] - 1]]), np.diff([*starts, len(cluster)]))
    ends = np.append(starts[1:], len(cluster)) - 1
    within[ends] = 1.0  # exact segment ends: a draw can never spill into the next segment
    global_cdf = np.cumsum(popularity)
    global_cdf[-1] = 1.0
    cdf = np.concatenate([cluster[by_cluster] + within, clusters + global_cdf])
    movie = np.concatenate([by_cluster, np.arange(len(cluster))])
    return cdf, movie


def _assign_genres(cluster: np.ndarray, clusters: int, rng: np.random.Generator) -> np.ndarray:
    signature = np.argsort(rng.random((clusters, len(GENRES))), axis=1)[:, :SIGNATURE_GENRES]
    chance = np.full((clusters, len(GENRES)), STRAY_GENRE_PROBABILITY)
    np.put_along_axis(chance, signature, SIGNATURE_GENRE_PROBABILITY, axis=1)
    genres = rng.random((len(cluster), len(GENRES))) < chance[cluster]
    bare = ~genres.any(axis=1)  # every movie has a genre: its cluster's first signature genre
    genres[np.flatnonzero(bare), signature[cluster[bare], 0]] = True
    return genres


def _movies_csv(catalogue: _Catalogue, first_rating: np.ndarray, rng: np.random.Generator) -> str:
    """movies.csv text; a title's year is never after the movie's first rating."""
    first_year = first_rating.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    year = np.minimum(catalogue.release_year, first_year)
    titles = np.char.add(np.char.add(_title_words(len(year), rng), " ("), year.astype(str))
    titles = np.char.add(titles, ")")
    needs_quotes = (np.char.find(titles, ",") >= 0) | (np.char.find(titles, '"') >= 0)
    quoted = np.char.add(np.char.add('"', np.char.replace(titles, '"', '""')), '"')
    titles = np.where(needs_quotes, quoted, titles)
    ids = np.arange(1, len(year) + 1).astype(str)
    lines = np.char.add(np.char.add(np.char.add(ids, ","), titles), ",")
    lines = np.char.add(lines, _genre_text(catalogue.genres))
    return MOVIES_HEADER + "\n".join(lines.tolist()) + "\n"


def _title_words(count: int, rng: np.random.Generator) -> np.ndarray:
    adjective = np.array(ADJECTIVES)[rng.integers(len(ADJECTIVES), size=count)]
    noun = np.array(NOUNS)[rng.integers(len(NOUNS), size=count)]
    other_noun = np.array(NOUNS)[rng.integers(len(NOUNS), size=count)]
    sequel = rng.integers(2, 5, size=count).astype(str)
    adjective_noun = np.char.add(np.char.add(adjective, " "), noun)
    variants = np.stack(
        [
            adjective_noun,  # Crimson Harbor
            np.char.add(noun, ", The"),  # Harbor, The
            np.char.add(adjective_noun, ", The"),  # Silent Witness, The
            np.char.add(np.char.add(noun, " of the "), other_noun),  # Heart of the Storm
            np.char.add(np.char.add(adjective_noun, " "), sequel),  # Golden Compass 2
        ]
    )
    pattern = rng.choice(len(variants), size=count, p=TITLE_PATTERN_WEIGHTS)
    return variants[pattern, np.arange(count)]


def _genre_text(genres: np.ndarray) -> np.ndarray:
    """Pipe-separated genre names per movie, in grouplens' alphabetical order."""
    text = np.full(len(genres), "", dtype=f"<U{sum(len(g) + 1 for g in GENRES)}")
    for column, genre in enumerate(GENRES):  # a loop over the 19 genres, not the movies
        text = np.where(genres[:, column], np.char.add(text, "|" + genre), text)
    return np.char.lstrip(text, "|")


# --- users --------------------------------------------------------------------------------------


def _make_audience(spec: SyntheticSpec, catalogue: _Catalogue, rng: np.random.Generator) -> _Audience:
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
    return _Audience(
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


# --- ratings ------------------------------------------------------------------------------------


def _rating_chunks(
    catalogue: _Catalogue,
    audience: _Audience,
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
        owner, movie = _sample_distinct_movies(users, catalogue, audience, rng)
        table = _rating_rows(users, owner, movie, catalogue, audience, rng)
        np.minimum.at(first_rating, movie, table.column("timestamp").to_numpy())
        yield table


def _rating_rows(
    users: np.ndarray,
    owner: np.ndarray,
    movie: np.ndarray,
    catalogue: _Catalogue,
    audience: _Audience,
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


def _taste_match(
    user: np.ndarray, movie: np.ndarray, catalogue: _Catalogue, audience: _Audience
) -> np.ndarray:
    """0: the movie is from another cluster, 1: the user's primary cluster, 2: the secondary one."""
    home = catalogue.cluster[movie]
    secondary = np.where(home == audience.secondary[user], 2, 0)
    return np.where(home == audience.primary[user], 1, secondary)


def _half_steps(
    owner: np.ndarray,
    user: np.ndarray,
    movie: np.ndarray,
    taste: np.ndarray,
    catalogue: _Catalogue,
    audience: _Audience,
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


def _write_in_background(tables: Iterator[pa.Table], handle: BinaryIO, bar: tqdm) -> None:
    """Write each table while the next one is generated: CSV formatting and deflate release the
    GIL, so the second core compresses while the first samples. At most two chunks in memory."""
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending: tuple[Future[None], int] | None = None
        for table in tables:
            if pending is not None:
                pending[0].result()
                bar.update(pending[1])
            pending = writer.submit(_write_ratings_table, table, handle), table.num_rows
        if pending is not None:
            pending[0].result()
            bar.update(pending[1])


def _write_ratings_table(table: pa.Table, handle: BinaryIO) -> None:
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    handle.write(buffer.getbuffer())


# --- sampling without replacement ---------------------------------------------------------------


def _sample_distinct_movies(
    users: np.ndarray, catalogue: _Catalogue, audience: _Audience, rng: np.random.Generator
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
    user: np.ndarray, catalogue: _Catalogue, audience: _Audience, rng: np.random.Generator
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
    user: np.ndarray, movie: np.ndarray, catalogue: _Catalogue, audience: _Audience
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
    catalogue: _Catalogue,
    audience: _Audience,
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


def _choice_probability_rows(user: np.ndarray, catalogue: _Catalogue, audience: _Audience) -> np.ndarray:
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


# --- zip members --------------------------------------------------------------------------------


def _member(name: str) -> zipfile.ZipInfo:
    """A deflated zip member with a fixed date, so equal contents give equal zip bytes."""
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info._compresslevel = ZIP_LEVEL  # no public setter before Python 3.13 (compress_level)
    info.external_attr = 0o644 << 16
    return info


def _spec_json(spec: SyntheticSpec) -> str:
    payload = {
        "generator": "two_tower_recsys.data.synthetic",
        "format_version": FORMAT_VERSION,
        "spec": dataclasses.asdict(spec),
    }
    return json.dumps(payload, indent=2) + "\n"
