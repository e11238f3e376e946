"""Candidate sources: where a batch's top-K comes from, the whole catalogue or an approximate index.

Both answer :meth:`CandidateSource.top` the same way: (scores, item indices), best first, the
hidden movies never among them, every score computed exactly (the index's dot product and
temperature), equal scores ranking the lower catalogue index first.

- :class:`ExactCandidates` ranks the whole catalogue (:func:`exact_top`).
- :class:`ApproximateCandidates` asks an approximate index (``pq`` or ``hnsw``, one
  :class:`CandidateSearcher`) for candidates, scores those exactly and ranks them. Each user gets
  the candidates its own ``k`` and its own number of hidden movies need (for pq ``refine_factor x
  k + hidden``; for hnsw ``k + hidden`` from each graph), so that ``k`` remain after the hidden
  ones are dropped. A user left with fewer than ``k`` (the index found too few), or one who would
  need more than ``MAX_ANN_FETCH`` (``k`` + hidden), is answered exactly instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from two_tower_recsys.artifacts.store import RetrievalIndex
from two_tower_recsys.inference.exact_ranking import MINUS_INF, Hidden, exact_top
from two_tower_recsys.retrieval.ann import HnswParams
from two_tower_recsys.retrieval.approximate import AnnParams, CandidateSearcher
from two_tower_recsys.retrieval.pq_scan import PqParams
from two_tower_recsys.retrieval.scorers import EmbeddingScorer
from two_tower_recsys.retrieval.topk import ranked_top_k
from two_tower_recsys.settings import InferConfig

log = logging.getLogger(__name__)

IndexKind = Literal["exact", "pq", "hnsw"]  # one of settings.INDEX_CHOICES
# Users needing more ANN candidates than this (k + excluded movies) are scored exactly: past a
# few thousand, an approximate search costs more than one exact row.
MAX_ANN_FETCH = 4096
# Candidates' vectors gathered and scored at once: [rows, candidates, dim] float32 of at most
# this (or one row's, if wider) stays in cache, where one block for a 1,024-user batch at k = 100
# took ~670 MB.
CANDIDATE_CHUNK_BYTES = 4 << 20


class CandidateSource(Protocol):
    def top(
        self, vectors: torch.Tensor, ks: torch.Tensor, hidden: Hidden
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, item indices) [len(vectors), max(ks)] of each user vector's top ``ks``, best
        first; ``hidden`` movies never among them; -inf where a row has no more."""
        ...


class ExactCandidates:
    """Every movie is a candidate: the exact core."""

    def __init__(self, scorer: EmbeddingScorer):
        self.scorer = scorer

    def top(
        self, vectors: torch.Tensor, ks: torch.Tensor, hidden: Hidden
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return exact_top(self.scorer, vectors, int(ks.max()), hidden)


class ApproximateCandidates:
    """Candidates from an approximate index, scored exactly; users it leaves short, exactly."""

    def __init__(self, searcher: CandidateSearcher, scorer: EmbeddingScorer, item_embeddings: torch.Tensor):
        if searcher.n_items != scorer.n_items:
            raise ValueError(f"the ANN index holds {searcher.n_items} items, the index {scorer.n_items}")
        self.searcher = searcher
        self.scorer = scorer
        self.item_embeddings = item_embeddings.detach().float()

    @property
    def n_items(self) -> int:
        return self.scorer.n_items

    def top(
        self, vectors: torch.Tensor, ks: torch.Tensor, hidden: Hidden
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n_rows, k_max = len(vectors), int(ks.max())
        row_ks, n_hidden = ks.numpy(), hidden.counts(n_rows)
        wanted = np.minimum(row_ks, self.n_items - n_hidden)  # what an exact answer would hold
        values = torch.full((n_rows, k_max), MINUS_INF)
        items = torch.zeros((n_rows, k_max), dtype=torch.int64)
        heavy = row_ks + n_hidden > MAX_ANN_FETCH
        light = np.flatnonzero(~heavy)
        counts = self.searcher.candidate_counts(row_ks[light], n_hidden[light])
        by_count = np.argsort(counts, kind="stable")  # similar widths share a search and a chunk
        exact_rows = [np.flatnonzero(heavy)]
        for chunk in _chunks(counts[by_count], self._candidates_per_chunk()):
            rows = light[by_count[chunk]]
            got_values, got_items = self._candidates_top(
                vectors[rows], row_ks[rows], n_hidden[rows], k_max, hidden.of_rows(rows, n_rows)
            )
            short = (got_values != MINUS_INF).sum(dim=1).numpy() < wanted[rows]
            exact_rows.append(rows[short])
            values[rows, : got_values.shape[1]] = got_values
            items[rows, : got_items.shape[1]] = got_items
        rows = np.sort(np.concatenate(exact_rows))
        if len(rows):
            values[rows], items[rows] = exact_top(
                self.scorer, vectors[rows], k_max, hidden.of_rows(rows, n_rows)
            )
        return values, items

    def _candidates_per_chunk(self) -> int:
        return max(1, CANDIDATE_CHUNK_BYTES // (4 * self.item_embeddings.shape[1]))

    def _candidates_top(
        self, vectors: torch.Tensor, ks: np.ndarray, n_hidden: np.ndarray, k_max: int, hidden: Hidden
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top of each row's candidates (at most ``k_max``), scored exactly, hidden ones -inf."""
        candidates = torch.from_numpy(self.searcher.search(vectors.numpy(), ks, n_hidden))
        missing = candidates < 0
        candidates[missing] = 0
        item_vectors = self.item_embeddings[candidates]  # [rows, width, dim]: a chunk's few MB
        scores = torch.bmm(item_vectors, vectors.unsqueeze(2)).squeeze(2)
        if self.scorer.temperature != 1.0:
            scores /= self.scorer.temperature
        scores[missing] = MINUS_INF
        if len(hidden.rows):
            keys = torch.arange(len(vectors)).unsqueeze(1) * self.n_items + candidates
            hidden_keys = torch.from_numpy(hidden.rows * self.n_items + hidden.items)
            scores[torch.isin(keys, hidden_keys)] = MINUS_INF
        # ties: the lower item index first, as exact
        return ranked_top_k(scores, min(k_max, scores.shape[1]), candidates)


def _chunks(sorted_counts: np.ndarray, budget: int) -> list[slice]:
    """Consecutive rows of ascending ``sorted_counts`` whose rows x widest count is within ``budget``
    (a row alone past it makes its own chunk)."""
    chunks, start = [], 0
    while start < len(sorted_counts):
        widths = sorted_counts[start:] * np.arange(1, len(sorted_counts) - start + 1)
        stop = start + max(1, int(np.searchsorted(widths, budget, side="right")))
        chunks.append(slice(start, stop))
        start = stop
    return chunks


def candidate_source(
    scorer: EmbeddingScorer, item_embeddings: torch.Tensor, ann: CandidateSearcher | None
) -> CandidateSource:
    """The whole catalogue (``ann`` None) or ``ann``'s candidates, scored by ``scorer``."""
    if ann is None:
        return ExactCandidates(scorer)
    return ApproximateCandidates(ann, scorer, item_embeddings)


def ann_params(infer: InferConfig) -> AnnParams | None:
    """The approximate index ``infer.index`` names, with its ``infer`` settings (None: exact)."""
    if infer.index == "pq":
        return PqParams(infer.pq_refine_factor)
    if infer.index == "hnsw":
        return HnswParams(
            infer.hnsw_m, infer.hnsw_ef_construction, infer.hnsw_ef_search, infer.hnsw_norm_ranges
        )
    return None


def default_ann_params(index: IndexKind) -> AnnParams:
    return PqParams() if index == "pq" else HnswParams()


def ann_searcher(directory: Path, index: RetrievalIndex, params: AnnParams) -> CandidateSearcher:
    """The approximate index shipped beside the index (verified by its manifest), else one built now."""
    shipped = index.manifest.get("ann")
    if params.file_name in index.manifest.get("files", {}) and shipped == params.build_settings():
        return params.read(directory / params.file_name)
    kind = params.build_settings()["kind"]
    log.warning(
        "no %s index built with %s in %s: building one in memory "
        "(package the model with infer.index=%s to ship it)",
        kind,
        params.build_settings(),
        directory,
        kind,
    )
    return params.build(index.item_embeddings.numpy())
