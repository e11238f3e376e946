"""Synthetic MovieLens-format data whose structure is known: the project's offline default dataset.

:func:`write_synthetic_zip` writes ``<name>/ratings.csv``, ``<name>/movies.csv`` and
``<name>/generator.json`` in the grouplens layout, so
:func:`~two_tower_recsys.data.movielens.read_movielens_zip` reads it like a real release.
The generative story, vectorised numpy seeded by ``spec.seed`` (same spec, same bytes), one module
a part:

* :mod:`.catalogue`, movies: Zipf-Mandelbrot popularity over shuffled ids, a home taste cluster, a
  quality offset, genres typical of the cluster, a title from seeded word lists and a release year;
* :mod:`.audience`, users: a power-law number of ratings (exactly ``spec.ratings`` in all), a
  primary taste cluster and a neighbouring secondary one, a taste strength, a leniency and a whole-
  or half-star habit, and an active time window;
* :mod:`.sampling`, choices: each user's movies are a weighted sample without replacement from a
  mixture of global popularity, the primary cluster and the secondary cluster;
* :mod:`.ratings`, stars: leniency + quality + cluster affinity + noise, rounded to stars, so
  in-cluster movies are mostly positives (>= 4): the signal a collaborative model finds and
  popularity lacks; and time: primary-cluster movies come early in a user's window and
  secondary-cluster ones late, i.e. taste drifts, so a user's newest positive is not a random draw
  from the older ones;
* :mod:`.writer`, the zip: users are generated in chunks of about
  :data:`~.ratings.CHUNK_RATINGS` ratings, each streamed into the zip as soon as it exists, which
  bounds memory at the ML-20M shape (20M ratings).
"""

from two_tower_recsys.data.synthetic.writer import (
    FORMAT_VERSION,
    SPEC_MEMBER,
    read_synthetic_spec,
    write_synthetic_zip,
)

__all__ = ["FORMAT_VERSION", "SPEC_MEMBER", "read_synthetic_spec", "write_synthetic_zip"]
