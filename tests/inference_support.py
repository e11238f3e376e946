"""Helpers for inference tests: an index whose right answers are known exactly, and a tiny trained one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch
from random_index import write_random_index
from support import TINY_SYNTHETIC, scratch_paths

from two_tower_recsys.artifacts.store import write_index
from two_tower_recsys.models.components.sequence_tower import TowerShape

# Six movies; item embeddings are one-hot, so score(user, movie) is the user's row entry itself.
MOVIE_IDS = [10, 20, 30, 40, 50, 60]
USER_IDS = [7, 3, 11]  # deliberately unsorted: user index 0 is userId 7
PREFERENCES = [
    [6.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # userId 7 likes movie 10 best, then 20, 30...
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],  # userId 3: the reverse
    [3.0, 6.0, 1.0, 5.0, 2.0, 4.0],  # userId 11
]
SEEN = {0: [0, 2], 1: [5], 2: [0, 1, 2, 3, 4]}  # user index -> positively rated item indices
# user index -> items rated but not positively: userId 3 gave movie 50, their best unseen one, 2 stars.
RATED_NOT_POSITIVE = {1: [4]}
POPULARITY = [5, 9, 9, 1, 0, 9]  # ties at 9: catalogue order (movies 20, 30, 60)
UNKNOWN_USER = 99


def title(movie_id: int) -> str:
    return f"Movie {movie_id} (2000)"


def drama_titles(movie_ids: list[int], titles: list[str]) -> pl.DataFrame:
    """An index's titles table: the movies in index order, every one a Drama."""
    return pl.DataFrame(
        {
            "item_idx": list(range(len(movie_ids))),
            "movieId": movie_ids,
            "title": titles,
            "genres": ["Drama"] * len(movie_ids),
        }
    )


def write_known_index(directory: Path, temperature: float = 1.0) -> Path:
    n_items = len(MOVIE_IDS)
    pairs = [(user, item) for user, items in SEEN.items() for item in items]
    write_index(
        directory,
        checkpoint=None,
        user_embeddings=torch.tensor(PREFERENCES),
        item_embeddings=torch.eye(n_items),
        temperature=temperature,
        user_ids=np.array(USER_IDS),
        item_ids=np.array(MOVIE_IDS),
        titles=drama_titles(MOVIE_IDS, [title(movie_id) for movie_id in MOVIE_IDS]),
        seen_pairs=pl.DataFrame({"user_idx": [u for u, _ in pairs], "item_idx": [i for _, i in pairs]}),
        popularity=np.array(POPULARITY),
        provenance={"dataset": {"name": "known-answers"}},
        rated_pairs=pl.DataFrame(
            {
                "user_idx": [u for u, items in RATED_NOT_POSITIVE.items() for _ in items],
                "item_idx": [i for items in RATED_NOT_POSITIVE.values() for i in items],
            }
        ),
    )
    return directory


def write_rated_index(
    directory: Path,
    users: np.ndarray,
    items: np.ndarray,
    rated: list[tuple[int, int]],
    *,
    temperature: float,
    name: str,
) -> Path:
    """An index of ``users`` x ``items`` vectors (user ids 1.., movie ids 100..) whose users rated
    the (user, item) pairs ``rated``: the even items positively, the odd ones not."""
    n_users, n_items = len(users), len(items)
    pairs = pl.DataFrame({"user_idx": [u for u, _ in rated], "item_idx": [i for _, i in rated]})
    positives = pairs.filter(pl.col("item_idx") % 2 == 0)
    write_index(
        directory,
        checkpoint=None,
        user_embeddings=torch.from_numpy(users),
        item_embeddings=torch.from_numpy(items),
        temperature=temperature,
        user_ids=np.arange(1, n_users + 1),
        item_ids=np.arange(100, 100 + n_items),
        titles=drama_titles(list(range(100, 100 + n_items)), [f"Movie {i}" for i in range(n_items)]),
        seen_pairs=positives,
        popularity=np.bincount(positives.get_column("item_idx").to_numpy(), minlength=n_items),
        provenance={"dataset": {"name": name}},
        rated_pairs=pairs.join(positives, on=["user_idx", "item_idx"], how="anti"),
    )
    return directory


def train_tiny_model(root: Path) -> Path:
    """Train a two-tower model for one epoch on tiny synthetic data under ``root``; its artifacts dir."""
    from two_tower_recsys.pipelines import train_pipeline
    from two_tower_recsys.pipelines.hydra_edge import compose_settings

    overrides = [o for o in TINY_SYNTHETIC if not o.startswith("trainer.max_epochs")]
    settings = compose_settings(
        [
            *overrides,
            "trainer.max_epochs=1",
            "logging.enabled=false",
            *scratch_paths(root),
        ]
    )
    train_pipeline.run(settings)
    return root / "artifacts"


# A random index whose model reads fresh histories (a randomly initialised sequence tower).
SEQUENCE_SHAPE = TowerShape(max_history=6, n_blocks=2, n_heads=2)
SEQUENCE_USERS, SEQUENCE_MOVIES = 40, 60  # user ids 1..40, movie ids 1..60


def write_sequence_index(directory: Path) -> Path:
    write_random_index(
        directory,
        n_users=SEQUENCE_USERS,
        n_items=SEQUENCE_MOVIES,
        dim=16,
        mean_positives=8,
        mean_other_ratings=4,
        seed=5,
        history_tower=SEQUENCE_SHAPE,
    )
    return directory
