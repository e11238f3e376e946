"""A well-formed index of any size with random embeddings: for serving benchmarks and tests.

Latency and memory depend on the catalogue size, the embedding width and how many movies each
user has seen, not on what the embeddings learned, so an ML-20M-sized random index (138,493 users
x 27,278 movies x 64, ~70 positives per user) measures serving at the original's scale without
training. Popular movies are seen more often (Zipf-like), as in MovieLens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from two_tower_recsys.artifacts.store import write_index
from two_tower_recsys.models.components.content import ContentEncoder
from two_tower_recsys.models.components.sequence_tower import SequenceTower, TowerShape
from two_tower_recsys.retrieval.seen import sorted_unique

ML20M_USERS, ML20M_MOVIES = 138_493, 27_278


def write_random_index(
    directory: Path,
    *,
    n_users: int,
    n_items: int,
    dim: int = 64,
    mean_positives: float = 70.0,
    mean_other_ratings: float = 0.0,
    seed: int = 0,
    item_embeddings: torch.Tensor | None = None,
    user_embeddings: torch.Tensor | None = None,
    history_tower: TowerShape | None = None,
    movie_content: ContentEncoder | None = None,
) -> dict[str, Any]:
    """Write a random index to ``directory``; user ids are 1..n_users, movie ids 1..n_items.

    ``mean_other_ratings``: non-positive ratings per user on top of the positives (ML-20M has
    about as many as positives: 144 ratings per user, 72 of them >= 4 stars).
    ``item_embeddings``, ``user_embeddings``: use these instead of random ones (e.g. clustered,
    closer to trained; or integer-valued, so that every score is exact whatever the summation order).
    ``history_tower``: ship a randomly initialised sequence user tower of this shape, so that
    requests may carry fresh histories (the stored user vectors stay random).
    ``movie_content``: ship this content encoder (a movie tower that reads content), so that
    movies can be added (``two-tower add-movies``).
    """
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    if user_embeddings is None:
        user_embeddings = torch.randn(n_users, dim, generator=generator) * 0.1
    if item_embeddings is None:
        item_embeddings = torch.randn(n_items, dim, generator=generator) * 0.1
    tower = None
    if history_tower is not None:
        with torch.random.fork_rng():  # seeded weights, the caller's global generator untouched
            torch.manual_seed(seed)
            tower = SequenceTower(
                torch.nn.Embedding.from_pretrained(item_embeddings),
                max_history=history_tower.max_history,
                n_blocks=history_tower.n_blocks,
                n_heads=history_tower.n_heads,
                dropout=0.0,
            )
    seen = _random_pairs(rng, n_users, n_items, mean_positives)
    rated = _random_pairs(rng, n_users, n_items, mean_other_ratings) if mean_other_ratings else None
    movie_ids = np.arange(1, n_items + 1, dtype=np.int64)
    return write_index(
        Path(directory),
        checkpoint=None,
        user_embeddings=user_embeddings,
        item_embeddings=item_embeddings,
        temperature=1.0,
        user_ids=np.arange(1, n_users + 1, dtype=np.int64),
        item_ids=movie_ids,
        titles=pl.DataFrame(
            {
                "item_idx": np.arange(n_items, dtype=np.int32),
                "movieId": movie_ids,
                "title": [f"Movie {movie_id} (2000)" for movie_id in movie_ids.tolist()],
                "genres": ["Drama"] * n_items,
            }
        ),
        seen_pairs=seen,
        popularity=np.bincount(seen.get_column("item_idx").to_numpy(), minlength=n_items),
        provenance={"dataset": {"name": "random", "seed": seed}},
        rated_pairs=rated,
        history_tower=tower,
        movie_content=movie_content,
    )


def _random_pairs(rng: np.random.Generator, n_users: int, n_items: int, mean_per_user: float) -> pl.DataFrame:
    """About ``mean_per_user`` distinct movies per user, popular ones more often (Zipf-like)."""
    counts = np.clip(rng.geometric(1.0 / mean_per_user, n_users), 1, n_items)
    users = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    popularity_weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    items = rng.choice(n_items, size=len(users), p=popularity_weights / popularity_weights.sum())
    pairs = sorted_unique(users * n_items + items)  # one rating per (user, movie)
    return pl.DataFrame({"user_idx": pairs // n_items, "item_idx": pairs % n_items})
