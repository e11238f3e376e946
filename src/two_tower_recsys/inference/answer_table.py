"""Every known user's top-K, computed when the model is packaged: a served request becomes a lookup.

Why: the exact answer to one user reads the whole movie matrix (27,278 x 64 float32, 7 MB at
ML-20M size). Between two requests the server, its HTTP stack and the client push that matrix out
of the cache, so in the server the product alone cost ~1.2 ms of CPU per request: more than the
0.3 x no-op budget that issue 9 sets for the whole request (benchmarks/bench_serving.py). A known
user's answer depends only on the index, ``k`` and ``exclude``, so the package ships it: the
first ``K`` (``infer.answer_table_k``) of every user, scored by :meth:`Recommender.top_items` in
batches by the core under the packaged ``exclude``: what the core answers alone, up to the
summation order of a batch's product (README, "Same answer alone, in a batch, or served"). Any
``k <= K`` is a prefix of those ``K``: the tie rule is a total order.

The table is two ``.npy`` files in the index copy, listed in its manifest (so verified like every
other file) with the ``k`` and ``exclude`` they hold; they are memory-mapped, so the server's
workers share one copy. 138,493 users x 100 take 111 MB; building them scores every user once,
as ``recommend-all`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib.format import open_memmap

from two_tower_recsys.errors import ArtifactError

TopItems = tuple[np.ndarray, np.ndarray]  # scores (float32), item indices: [users, k], best first
ANSWER_ITEMS = "answer_items.npy"
ANSWER_SCORES = "answer_scores.npy"
MANIFEST_KEY = "answer_table"


@dataclass(frozen=True)
class AnswerTable:
    items: np.ndarray  # int32 [n_users, k]: catalogue indices, best first
    scores: np.ndarray  # float32 [n_users, k]: -inf pads a user with fewer than k movies left
    exclude: str  # what the rows hide: the packaged infer.exclude

    @property
    def k(self) -> int:
        return self.items.shape[1]

    def answers(self, ks: np.ndarray, exclude: str) -> bool:
        """True if every one of ``ks`` under ``exclude`` is a prefix of the table's rows."""
        return exclude == self.exclude and len(ks) > 0 and int(ks.max()) <= self.k

    def top_items(self, users: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, item indices) [len(users), k] of the user indices ``users``: what the core computes."""
        scores = torch.from_numpy(self.scores[users, :k])
        return scores, torch.from_numpy(self.items[users, :k].astype(np.int64))


def write_answer_table(
    directory: Path, batches: Iterable[tuple[np.ndarray, TopItems]], n_users: int, k: int, exclude: str
) -> dict[str, Any]:
    """Write ``batches`` (user indices, (scores, items)), every user once, into ``directory``.

    Filled batch by batch through memory maps: the whole table is never held twice. Returns the
    manifest entry; callers write inside a staged directory committed atomically.
    """
    scores = open_memmap(Path(directory) / ANSWER_SCORES, mode="w+", dtype=np.float32, shape=(n_users, k))
    items = open_memmap(Path(directory) / ANSWER_ITEMS, mode="w+", dtype=np.int32, shape=(n_users, k))
    for users, (batch_scores, batch_items) in batches:
        scores[users], items[users] = batch_scores, batch_items
    scores.flush()
    items.flush()
    del scores, items
    return {MANIFEST_KEY: {"k": int(k), "exclude": exclude}}


def read_answer_table(directory: Path, manifest: dict[str, Any]) -> AnswerTable | None:
    """The table listed in the (verified) ``manifest`` of ``directory``; None where there is none."""
    files = manifest.get("files", {})
    settings = manifest.get(MANIFEST_KEY)
    if settings is None or ANSWER_ITEMS not in files or ANSWER_SCORES not in files:
        return None
    items = np.load(Path(directory) / ANSWER_ITEMS, mmap_mode="r")
    scores = np.load(Path(directory) / ANSWER_SCORES, mmap_mode="r")
    if items.shape != scores.shape or items.ndim != 2 or items.shape[1] != settings["k"]:
        raise ArtifactError(f"the answer table in {directory} does not match its manifest entry {settings}")
    return AnswerTable(items, scores, str(settings["exclude"]))
