"""The one evaluator: every model is measured by :func:`evaluate`.

For each evaluated user, every catalogue movie is scored, the user's history is excluded
(train movies for validation; train + the validation movie for test) and the held-out movie's
rank is taken. Users are scored in batches, so memory stays at ``batch_size x n_items`` floats
whatever the number of users.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from two_tower_recsys.evaluation.metrics import ranks_of_targets, summarize
from two_tower_recsys.preprocessing.processed import ProcessedDataset
from two_tower_recsys.preprocessing.split import TEST, VAL
from two_tower_recsys.retrieval.scorers import Scorer
from two_tower_recsys.retrieval.seen import SeenItems, mask_seen


@dataclass(frozen=True)
class EvaluationTask:
    """Who is evaluated on which movie, and what each of them has already seen."""

    split: str
    users: np.ndarray  # int64 user indices, one row per evaluated user
    targets: np.ndarray  # int64 item index of each user's held-out movie
    history: pl.DataFrame  # (user_idx, item_idx) excluded from ranking; popularity is fitted on it
    seen: SeenItems

    def shard(self, index: int, count: int) -> EvaluationTask:
        """Every ``count``-th user starting at ``index``: one process's share under DDP."""
        return replace(self, users=self.users[index::count], targets=self.targets[index::count])


@dataclass(frozen=True)
class EvaluationResult:
    split: str
    ranks: np.ndarray
    metrics: dict[str, float]
    top_items: np.ndarray | None = None  # users x K best unseen movies (-1: none left), when asked


def history_for(dataset: ProcessedDataset, split: str) -> pl.DataFrame:
    """Interactions known before ``split``: train for validation, train + validation for test."""
    if split == VAL:
        frames = [dataset.train]
    elif split == TEST:
        frames = [dataset.train, dataset.val]
    else:
        raise ValueError(f"cannot evaluate on split {split!r}; choose {VAL} or {TEST}")
    return pl.concat([frame.select("user_idx", "item_idx") for frame in frames])


def evaluation_task(dataset: ProcessedDataset, split: str) -> EvaluationTask:
    history = history_for(dataset, split)
    held_out = dataset.split(split).sort("user_idx")
    return EvaluationTask(
        split=split,
        users=held_out.get_column("user_idx").to_numpy().astype(np.int64),
        targets=held_out.get_column("item_idx").to_numpy().astype(np.int64),
        history=history,
        seen=SeenItems.from_pairs(
            history.get_column("user_idx").to_numpy(),
            history.get_column("item_idx").to_numpy(),
            dataset.n_users,
        ),
    )


def compute_ranks(
    scorer: Scorer,
    task: EvaluationTask,
    *,
    batch_size: int = 1024,
    progress: bool = True,
    description: str = "evaluating",
) -> np.ndarray:
    ranks, _ = rank_and_recommend(
        scorer, task, batch_size=batch_size, progress=progress, description=description
    )
    return ranks


def rank_and_recommend(
    scorer: Scorer,
    task: EvaluationTask,
    *,
    batch_size: int = 1024,
    progress: bool = True,
    description: str = "evaluating",
    top_k: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Each user's held-out movie rank and, with ``top_k``, their top-``top_k`` unseen movies.

    The lists come from the same masked scores as the ranks (users x top_k item indices, best
    first); a slot beyond the user's unseen movies holds -1.
    """
    users = torch.from_numpy(task.users)
    targets = torch.from_numpy(task.targets)
    ranks = np.empty(len(users), dtype=np.int64)
    top_k = min(top_k, scorer.n_items)
    top_items = np.full((len(users), top_k), -1, dtype=np.int64) if top_k else None
    starts = range(0, len(users), batch_size)
    for start in tqdm(starts, desc=description, unit="batch", disable=not progress, leave=False):
        batch_users = users[start : start + batch_size]
        scores = mask_seen(scorer.score(batch_users), batch_users, task.seen)
        ranks[start : start + batch_size] = ranks_of_targets(
            scores, targets[start : start + batch_size]
        ).numpy()
        if top_items is not None:
            best_scores, best_items = torch.topk(scores, top_k, dim=1)
            top_items[start : start + batch_size] = torch.where(
                best_scores > float("-inf"), best_items, -1
            ).numpy()
    return ranks, top_items


def evaluate(
    scorer: Scorer,
    task: EvaluationTask,
    *,
    recall_ks: tuple[int, ...] = (10, 50, 100),
    ndcg_ks: tuple[int, ...] = (10, 50),
    batch_size: int = 1024,
    progress: bool = True,
    description: str | None = None,
    top_k: int = 0,
) -> EvaluationResult:
    """Ranks and metrics of ``scorer`` on ``task``; with ``top_k``, each user's top-``top_k`` list too."""
    ranks, top_items = rank_and_recommend(
        scorer,
        task,
        batch_size=batch_size,
        progress=progress,
        description=description or f"evaluating {task.split}",
        top_k=top_k,
    )
    return EvaluationResult(
        split=task.split,
        ranks=ranks,
        metrics=summarize(ranks, recall_ks, ndcg_ks),
        top_items=top_items,
    )
