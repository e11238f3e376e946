"""Recommendations for every user of the index, written to one parquet file.

Rows ``(user_id, rank, movieId, score)``: ``rank`` 1 is the best, ``score`` the float32 the
recommender ranks by (the same number it returns one user at a time). The users are scored in
batches by :meth:`Recommender.top_items`, the array form of the one recommendation core, so the
file holds exactly what ``two-tower infer`` or the served model answer for each user, under the
same ``exclude`` and ``index`` settings; a user with fewer than ``k`` movies left has fewer rows.

The file is written through a temporary file renamed into place: a reader sees the previous
complete file or the new one, never a partial one.

``workers`` batches (default: torch's thread count) are scored at once, each in its own thread
with one torch thread, while the calling thread writes the finished ones in order (``workers=1``:
one batch at a time on torch's threads). On 2 cores
that beat one batch at a time on 2 torch threads, whose many small parallel operations per
batch kept both cores waiting on each other (benchmarks/bench_recommend_all.py). Memory stays
at ``workers`` batches of scores (each scored a few MB at a time) and ``2 x workers`` tables.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from two_tower_recsys.errors import ConfigError
from two_tower_recsys.inference.answer_table import TopItems
from two_tower_recsys.inference.recommender import Exclude, Recommender
from two_tower_recsys.settings import InferConfig
from two_tower_recsys.utils.fileio import atomic_path

SCHEMA = pa.schema(
    [("user_id", pa.int64()), ("rank", pa.int32()), ("movieId", pa.int64()), ("score", pa.float32())]
)
# Dictionary-encode only the columns that repeat (each user_id k times, ranks 1..k per user): on
# movieId and score it cost half the writing time and made the file larger (ML-20M shape, k=100:
# 11.5 -> 5.2 ms of CPU per 1,024 users, 125 -> 113 MB).
PARQUET_OPTIONS: dict[str, object] = {"use_dictionary": ["user_id", "rank"]}


@dataclass(frozen=True)
class BatchSummary:
    path: Path
    users: int
    rows: int


def recommendation_table(
    users: np.ndarray, top: TopItems, index_user_ids: np.ndarray, item_ids: np.ndarray
) -> pa.Table:
    """The rows of the user indices ``users``, best first per user; excluded movies never appear."""
    values, items = top
    kept = values != -np.inf  # excluded movies (and a short user's padding) score -inf, sorted last
    width = values.shape[1]
    return pa.table(
        {
            "user_id": np.repeat(index_user_ids[users], width)[kept.ravel()],
            "rank": np.tile(np.arange(1, width + 1, dtype=np.int32), len(users))[kept.ravel()],
            "movieId": item_ids[items[kept]],
            "score": values[kept].astype(np.float32, copy=False),
        },
        schema=SCHEMA,
    )


def top_items_of_every_user(
    recommender: Recommender,
    k: int,
    *,
    exclude: Exclude = InferConfig.exclude,
    progress: bool = True,
    workers: int | None = None,
    desc: str = "recommend-all",
) -> Iterator[tuple[np.ndarray, TopItems]]:
    """``(user indices, (scores, item indices))`` per batch of users, in order, best first.

    ``k`` is clamped to the catalogue; a short user's row ends in ``-inf`` scores. The batches
    are scored ``workers`` at a time (see the module docstring).
    """
    if k <= 0:
        raise ConfigError(f"k must be positive, got {k}")
    workers = workers or torch.get_num_threads()
    n_users = len(recommender.index.user_ids)
    starts = range(0, n_users, recommender.batch_size)
    ks = np.full(recommender.batch_size, min(k, recommender.n_items), dtype=np.int64)

    def score(users: np.ndarray) -> TopItems:
        values, items = recommender.top_items(users, ks[: len(users)], exclude)
        return values.numpy(), items.numpy()

    with (
        tqdm(total=len(starts), desc=desc, unit="batch", disable=not progress) as bar,
        one_torch_thread(when=workers > 1),
        ThreadPoolExecutor(workers, thread_name_prefix=desc) as pool,
    ):
        pending: deque[tuple[np.ndarray, Future[TopItems]]] = deque()
        for start in starts:
            users = np.arange(start, min(start + recommender.batch_size, n_users), dtype=np.int64)
            pending.append((users, pool.submit(score, users)))
            while len(pending) > workers or (pending and start == starts[-1]):
                done_users, top = pending.popleft()
                yield done_users, top.result()
                bar.update()


def write_all_recommendations(
    recommender: Recommender,
    path: Path,
    k: int,
    *,
    exclude: Exclude = InferConfig.exclude,
    progress: bool = True,
    workers: int | None = None,
) -> BatchSummary:
    """Write the top-``k`` of every user in the index to ``path`` (parquet), atomically."""
    if k <= 0:
        raise ConfigError(f"k must be positive, got {k}")
    index = recommender.index
    rows = 0
    with atomic_path(Path(path)) as tmp, pq.ParquetWriter(tmp, SCHEMA, **PARQUET_OPTIONS) as writer:
        for users, top in top_items_of_every_user(
            recommender, k, exclude=exclude, progress=progress, workers=workers
        ):
            table = recommendation_table(users, top, index.user_ids, index.item_ids)
            writer.write_table(table)
            rows += table.num_rows
    return BatchSummary(Path(path), len(index.user_ids), rows)


@contextmanager
def one_torch_thread(when: bool) -> Iterator[None]:
    """torch's intra-op threads set to 1 while the worker threads score, then restored."""
    threads = torch.get_num_threads()
    if when:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
