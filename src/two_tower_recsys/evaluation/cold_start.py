"""Cold-start measurement: how well a model ranks movies it never saw in training.

A share of the movies is held out of training entirely (``eval.cold_start_share``, chosen in
``pipelines/cold_start.py``). Each user with positives on held-out movies is then evaluated on
those movies alone: all held-out movies are ranked for the user (none of them is hidden: the user
never rated one in training), and

- Recall@K: the share of the user's held-out positives in the top K (K larger than the number of
  held-out movies counts all of them);
- NDCG@K: DCG of the hits in the top K over the ideal DCG of the user's positives (binary gains),

averaged over users, with a percentile bootstrap interval over users (``eval.bootstrap_*``).
Scores only need to be a [users, held-out movies] matrix, so any model can be measured: the
two-tower's user vectors against the held-out movies' content vectors, or a content-free
baseline such as :func:`genre_popularity_scores`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from two_tower_recsys.evaluation.bootstrap import BootstrapSettings
from two_tower_recsys.retrieval.topk import rows_per_chunk, top_k


@dataclass(frozen=True)
class ColdStartTask:
    """Users evaluated and their positives among the held-out movies (CSR over positions 0..n_cold-1)."""

    users: np.ndarray  # int64 user indices, ascending
    indptr: np.ndarray  # [len(users) + 1]
    positives: np.ndarray  # positions within the held-out movies

    @classmethod
    def from_pairs(cls, users: np.ndarray, positions: np.ndarray) -> ColdStartTask:
        order = np.lexsort((positions, users))
        users, positions = users[order], positions[order]
        evaluated, counts = np.unique(users, return_counts=True)
        indptr = np.zeros(len(evaluated) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(evaluated.astype(np.int64), indptr, positions.astype(np.int64))


def metric_names(recall_ks: tuple[int, ...], ndcg_ks: tuple[int, ...]) -> list[str]:
    return [f"recall@{k}" for k in recall_ks] + [f"ndcg@{k}" for k in ndcg_ks]


def per_user_values(
    scores: torch.Tensor, task: ColdStartTask, recall_ks: tuple[int, ...], ndcg_ks: tuple[int, ...]
) -> np.ndarray:
    """[users, metrics] of ``scores`` ([len(task.users), n_cold], rows in task order)."""
    n_users, n_cold = scores.shape
    k_max = min(max((*recall_ks, *ndcg_ks)), n_cold)
    relevant = np.zeros((n_users, n_cold), dtype=bool)
    owner = np.repeat(np.arange(n_users), np.diff(task.indptr))
    relevant[owner, task.positives] = True
    hits = np.zeros((n_users, k_max), dtype=bool)
    step = rows_per_chunk(n_cold)
    for start in range(0, n_users, step):
        _, items = top_k(scores[start : start + step].float().contiguous(), k_max)
        hits[start : start + step] = np.take_along_axis(relevant[start : start + step], items.numpy(), axis=1)
    n_positive = np.diff(task.indptr)
    discounts = 1.0 / np.log2(np.arange(2, k_max + 2))
    columns = []
    for k in recall_ks:
        columns.append(hits[:, :k].sum(axis=1) / n_positive)
    for k in ndcg_ks:
        dcg = (hits[:, :k] * discounts[: min(k, k_max)]).sum(axis=1)
        ideal = np.cumsum(discounts)[np.minimum(n_positive, min(k, k_max)) - 1]
        columns.append(dcg / ideal)
    return np.stack(columns, axis=1)


def bootstrap_bounds(values: np.ndarray, settings: BootstrapSettings) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each column mean, resampling users (rows) with replacement."""
    rng = np.random.default_rng(settings.seed)
    n_users = len(values)
    means = np.empty((settings.n_resamples, values.shape[1]))
    for resample in range(settings.n_resamples):
        counts = np.bincount(rng.integers(0, n_users, n_users), minlength=n_users)
        means[resample] = counts @ values / n_users
    tail = (1.0 - settings.confidence) / 2
    return np.quantile(means, tail, axis=0), np.quantile(means, 1.0 - tail, axis=0)


def genre_popularity_scores(
    movie_genres: np.ndarray, warm_genres: np.ndarray, warm_positives: np.ndarray
) -> torch.Tensor:
    """A content-free baseline for new movies: how popular the movie's genres are.

    Score of a held-out movie = the mean, over its genres, of the genre's share of all training
    positives (``warm_positives`` per warm movie, ``warm_genres`` its multi-hot genres). The same
    for every user; a movie without a genre scores 0.
    """
    genre_positives = warm_positives.astype(np.float64) @ warm_genres.astype(np.float64)
    share = genre_positives / max(genre_positives.sum(), 1.0)
    counts = movie_genres.sum(axis=1)
    scores = (movie_genres.astype(np.float64) @ share) / np.maximum(counts, 1)
    return torch.from_numpy(scores.astype(np.float32)).unsqueeze(0)


def genre_affinity_scores(
    movie_genres: np.ndarray, users: np.ndarray, user_genre_positives: np.ndarray
) -> torch.Tensor:
    """A second baseline, personal: the mean over the movie's genres of the user's share of their
    own training positives in that genre (``user_genre_positives``: [all users, genres])."""
    rows = user_genre_positives[users].astype(np.float64)
    shares = rows / np.maximum(rows.sum(axis=1, keepdims=True), 1.0)
    counts = np.maximum(movie_genres.sum(axis=1), 1)
    return torch.from_numpy(((shares @ movie_genres.T.astype(np.float64)) / counts).astype(np.float32))
