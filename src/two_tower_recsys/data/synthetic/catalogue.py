"""The movies: popularity, taste clusters, quality, genres, release years, titles and movies.csv.

Each movie has a Zipf-Mandelbrot popularity over shuffled ids, a home taste cluster, a quality offset,
genres typical of its cluster, a title from seeded word lists and a release year. The
:class:`Catalogue` also holds the inverse-cdf table that :mod:`.sampling` draws movies from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from two_tower_recsys.settings import SyntheticSpec

MOVIES_HEADER = "movieId,title,genres\n"
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
class Catalogue:
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


def make_catalogue(spec: SyntheticSpec, rng: np.random.Generator) -> Catalogue:
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
    return Catalogue(
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


def movies_csv(catalogue: Catalogue, first_rating: np.ndarray, rng: np.random.Generator) -> str:
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
