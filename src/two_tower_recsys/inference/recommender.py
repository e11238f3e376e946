"""The recommendation core: top-K movies for a batch of users, shared by the CLI, recommend-all and serving.

It scores with the index's :class:`EmbeddingScorer` and hides excluded movies with
:func:`mask_seen`, the very code the evaluator measures, then takes the exact top-k over the whole
catalogue (:func:`~two_tower_recsys.retrieval.topk.top_k`: equal scores rank the lower catalogue
index first, on every path); or, with an approximate index (``index="pq"`` or ``"hnsw"``), it asks
that index for candidates, scores those exactly and filters them the same way.

Answers, one per user and in the order asked:

- ``recommendations``: ``(movieId, score, title)`` triples, best first. ``exclude`` says which
  movies are never recommended: ``rated`` (the default: every movie the user rated, positive or
  not), ``positives`` (only the positives: what evaluation hides) or ``none``. A user who has
  rated almost the whole catalogue gets fewer than ``k`` (never an excluded movie, never a
  ``-inf`` score).
- ``k`` above the catalogue size is clamped to it; the answer reports the clamped ``k``.
- A user id the model has never seen is not an error: the answer is the popularity ranking
  (score = the movie's number of positives; ties in catalogue order) with ``fallback=True``.
- ``histories`` (a sequence user tower only): a list of movieIds per user, most recent last, or
  None for a user who sends none. The user vector is then computed from that history (for a known
  user it replaces the stored one), its movies are never recommended (besides what ``exclude``
  hides for a known user), and the answer counts the movieIds skipped as unknown
  (``unknown_history_items``). A history with no known movie gets the popularity ranking, flagged
  ``fallback=True``. An ID user tower cannot read a history: asking is a RequestError.
- With the approximate index, each user's candidates are over-fetched by the number of movies
  they have excluded (rounded up to a power of two), so that ``k`` remain after filtering; a user
  left with fewer than ``k``, or one who would need more than ``MAX_ANN_FETCH`` candidates, is
  answered exactly instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from two_tower_recsys.artifacts.store import RetrievalIndex, load_index
from two_tower_recsys.errors import ConfigError, RequestError
from two_tower_recsys.inference.answer_table import AnswerTable, read_answer_table
from two_tower_recsys.inference.fresh_histories import FreshHistories, IdLookup
from two_tower_recsys.inference.validation import history_arrays, k_array, user_id_array
from two_tower_recsys.retrieval.ann import HnswParams
from two_tower_recsys.retrieval.approximate import AnnParams, CandidateSearcher
from two_tower_recsys.retrieval.pq_scan import PqParams
from two_tower_recsys.retrieval.scorers import PopularityScorer
from two_tower_recsys.retrieval.seen import SeenItems
from two_tower_recsys.retrieval.topk import ranked_top_k, rows_per_chunk, top_k
from two_tower_recsys.settings import InferConfig

log = logging.getLogger(__name__)

Triple = tuple[int, float, str]  # movieId, score, title
RECOMMENDATION_FORMATS = ("triples", "structs")
Exclude = Literal["rated", "positives", "none"]
EXCLUDE_CHOICES: tuple[str, ...] = ("rated", "positives", "none")
IndexKind = Literal["exact", "pq", "hnsw"]
INDEX_CHOICES: tuple[str, ...] = ("exact", "pq", "hnsw")
# Users needing more ANN candidates than this (k + excluded movies) are scored exactly: past a
# few thousand, an approximate search costs more than one exact row.
MAX_ANN_FETCH = 4096
MIN_ANN_FETCH = 16
MAX_HISTORY_ITEMS = 10_000  # movieIds in one user's request history (infer.max_history_items)
_MINUS_INF = float("-inf")


@dataclass(frozen=True)
class UserRecommendations:
    user_id: int
    k: int  # after the clamp to the catalogue size
    fallback: bool  # True: unknown user, answered with the popularity ranking
    recommendations: list[Triple]
    unknown_history_items: int | None = None  # with a request history: movieIds skipped as unknown

    def as_dict(self, recommendation_format: str = "triples") -> dict[str, Any]:
        """The JSON shape printed by the CLI and returned per row by the served model.

        ``recommendation_format="structs"`` gives each recommendation as
        ``{"movieId", "score", "title"}`` instead of a ``[movieId, score, title]`` triple: the form
        Spark can type (``array<struct<...>>``; a mixed-type list has no Spark type).
        """
        if recommendation_format == "structs":
            recommendations: list[Any] = [
                {"movieId": movie_id, "score": score, "title": title}
                for movie_id, score, title in self.recommendations
            ]
        elif recommendation_format == "triples":
            recommendations = [list(triple) for triple in self.recommendations]
        else:
            raise RequestError(
                f"recommendation_format must be one of {', '.join(RECOMMENDATION_FORMATS)}, "
                f"got {recommendation_format!r}"
            )
        answer = {
            "user_id": self.user_id,
            "k": self.k,
            "fallback": self.fallback,
            "recommendations": recommendations,
        }
        if self.unknown_history_items is not None:
            answer["unknown_history_items"] = self.unknown_history_items
        return answer


@dataclass(frozen=True)
class Hidden:
    """(row, item) pairs a batch of rows must never get: excluded movies, a history's movies.

    NumPy arrays: a one-user request makes a handful of these small operations, each ~1 us in
    NumPy against ~10 us in torch.
    """

    rows: np.ndarray  # int64, ascending
    items: np.ndarray  # int64

    def counts(self, n_rows: int) -> np.ndarray:
        return np.bincount(self.rows, minlength=n_rows)

    def of_rows(self, rows: np.ndarray, n_rows: int) -> Hidden:
        """The pairs of ``rows`` (of a batch of ``n_rows``), renumbered 0..len(rows) - 1."""
        renumbered = np.full(n_rows, -1, dtype=np.int64)
        renumbered[rows] = np.arange(len(rows))
        new_rows = renumbered[self.rows]
        kept = new_rows >= 0
        return Hidden(new_rows[kept], self.items[kept])

    def of_row_range(self, start: int, stop: int) -> Hidden:
        """The pairs of rows ``start..stop - 1``, renumbered from 0."""
        low, high = np.searchsorted(self.rows, (start, stop)).tolist()
        if start == 0 and low == 0 and high == len(self.rows):
            return self
        return Hidden(self.rows[low:high] - start, self.items[low:high])

    def unique(self, n_items: int) -> Hidden:
        keys = np.unique(self.rows * n_items + self.items)
        return Hidden(keys // n_items, keys % n_items)

    def hide(self, scores: torch.Tensor) -> None:
        """Set the hidden pairs' scores to -inf, in place (``scores``: [rows of the batch, n_items])."""
        if len(self.rows):
            scores.numpy()[self.rows, self.items] = _MINUS_INF


_NOTHING_HIDDEN = Hidden(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


def hidden_of(users: np.ndarray, excluded: SeenItems | None) -> Hidden:
    if excluded is None:
        return _NOTHING_HIDDEN
    return Hidden(*excluded.batch_positions(users))


class Recommender:
    """Loads an index once and answers :meth:`recommend` for any number of users."""

    def __init__(
        self,
        index: RetrievalIndex,
        *,
        batch_size: int = 1024,
        ann: CandidateSearcher | None = None,
        max_history_items: int = MAX_HISTORY_ITEMS,
        answers: AnswerTable | None = None,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if ann is not None and ann.n_items != index.n_items:
            raise ValueError(f"the ANN index holds {ann.n_items} items, the index {index.n_items}")
        self.index = index
        self.batch_size = batch_size
        self.ann = ann
        self.max_history_items = max_history_items
        if answers is not None and (ann is not None or len(answers.items) != len(index.user_ids)):
            raise ValueError("an answer table holds exact answers for every user of the index")
        self.answers = answers
        # userId -> user index for table lookups: one dict probe beats NumPy's search per request
        user_ids = index.user_ids.tolist() if answers else []
        self._table_rows = dict(zip(user_ids, range(len(user_ids)), strict=True))
        self._scorer = index.scorer()
        self._users = IdLookup(index.user_ids)
        self._movies = IdLookup(index.item_ids)
        # Python lists: building triples from them is several times faster than from arrays.
        self._movie_ids: list[int] = index.item_ids.tolist()
        self._titles: list[str] = list(index.titles)
        self._popular, self._popular_items = self._popularity_ranking(index)

    @classmethod
    def from_artifacts(
        cls,
        directory: Path,
        *,
        batch_size: int = 1024,
        index: IndexKind = "exact",
        ann_params: AnnParams | None = None,
        max_history_items: int = MAX_HISTORY_ITEMS,
    ) -> Recommender:
        """Load (and verify against its manifest) the index in ``directory``.

        ``index="pq"`` or ``"hnsw"`` uses that approximate index shipped in ``directory`` (a
        packaged model's index) when it was built with ``ann_params``' build settings (default:
        the kind's defaults), and otherwise builds one in memory. ``index="exact"`` uses the
        answer table shipped in ``directory``, if any.
        """
        retrieval_index = load_index(directory)
        if index not in INDEX_CHOICES:
            raise ConfigError(f"index must be one of {', '.join(INDEX_CHOICES)}, got {index!r}")
        ann, answers = None, None
        if index != "exact":
            ann = ann_searcher(Path(directory), retrieval_index, ann_params or default_ann_params(index))
        else:
            answers = read_answer_table(Path(directory), retrieval_index.manifest)
        return cls(
            retrieval_index,
            batch_size=batch_size,
            ann=ann,
            max_history_items=max_history_items,
            answers=answers,
        )

    @classmethod
    def from_settings(cls, directory: Path, infer: InferConfig) -> Recommender:
        """:meth:`from_artifacts` with the ``infer`` settings: what the CLI, recommend-all and serving use."""
        return cls.from_artifacts(
            directory,
            batch_size=infer.batch_size,
            index=infer.index,
            ann_params=ann_params(infer),
            max_history_items=infer.max_history_items,
        )

    @property
    def n_items(self) -> int:
        return self.index.n_items

    def recommend(
        self,
        user_ids: Sequence[int] | np.ndarray,
        k: int | Sequence[int],
        *,
        exclude: Exclude = "rated",
        histories: Sequence[Sequence[int] | np.ndarray | None] | None = None,
    ) -> list[UserRecommendations]:
        """Top-``k`` for each user (``k`` may also be one value per user); raises RequestError.

        ``histories``: one list of movieIds (most recent last) or None per user; see the module doc.
        """
        if exclude not in EXCLUDE_CHOICES:
            raise ConfigError(f"exclude must be one of {', '.join(EXCLUDE_CHOICES)}, got {exclude!r}")
        ids = user_id_array(user_ids)
        ks = np.minimum(k_array(k, len(ids)), self.n_items)
        fresh = self._fresh_histories(histories, len(ids))
        if fresh is None and self.answers is not None:
            looked_up = self.looked_up(ids, ks, exclude)
            if looked_up is not None:
                return looked_up
        indices, known = self._users.indices(ids)
        answers: list[UserRecommendations | None] = [None] * len(ids)
        id_list, k_list = ids.tolist(), ks.tolist()  # Python ints: cheaper to index per row
        known_rows = np.flatnonzero(known)
        if fresh is not None:
            by_id = known.copy()
            by_id[fresh.rows] = False
            known_rows = np.flatnonzero(by_id)
            self._answer_histories(fresh, ids, ks, indices, known, exclude, answers)
        for start in range(0, len(known_rows), self.batch_size):
            rows = known_rows[start : start + self.batch_size]
            values, items = self.top_items(indices[rows], ks[rows], exclude)
            for row, triples in zip(rows.tolist(), self._triples(values, items, ks[rows]), strict=True):
                answers[row] = UserRecommendations(id_list[row], k_list[row], False, triples)
        if len(known_rows) < len(ids):
            for row in np.flatnonzero(~known).tolist():
                if answers[row] is None:  # not answered from a history
                    k_row = k_list[row]
                    answers[row] = UserRecommendations(id_list[row], k_row, True, self._popular[:k_row])
        return answers  # type: ignore[return-value]  # every row was answered above

    def looked_up(
        self, user_ids: np.ndarray, ks: np.ndarray, exclude: Exclude
    ) -> list[UserRecommendations] | None:
        """:meth:`recommend`'s answers read from the answer table, or None unless it holds them all.

        It holds them when every user is known, every ``k`` (clamped to the catalogue) is within
        the table's and ``exclude`` is the one it was built with. ``user_ids`` and ``ks``: int64
        arrays, already validated. A few Python operations per user, no NumPy search or torch
        call: a served one-user request does little else.
        """
        table = self.answers
        if table is None or exclude != table.exclude or len(user_ids) == 0:
            return None
        id_list = user_ids.tolist()
        k_list = [min(k, self.n_items) for k in ks.tolist()]
        width = max(k_list)
        rows = [self._table_rows.get(user_id) for user_id in id_list]
        if width > table.k or None in rows:
            return None
        triples = self._triples_of_lists(
            table.scores[rows, :width].tolist(), table.items[rows, :width].tolist(), k_list
        )
        return [
            UserRecommendations(user_id, k, False, user_triples)
            for user_id, k, user_triples in zip(id_list, k_list, triples, strict=True)
        ]

    def _fresh_histories(
        self, histories: Sequence[Sequence[int] | np.ndarray | None] | None, n_rows: int
    ) -> FreshHistories | None:
        if histories is None:
            return None
        checked = history_arrays(histories, n_rows, self.max_history_items)
        if all(history is None for history in checked):
            return None
        if self.index.history_tower is None:
            raise RequestError(
                "history: this model's user tower is an ID embedding (model.user_tower=id) and "
                "cannot read a history; send user_id alone, or serve a model trained with "
                "model.user_tower=sequence"
            )
        return FreshHistories.resolve(checked, self._movies)

    def _answer_histories(
        self,
        fresh: FreshHistories,
        ids: np.ndarray,
        ks: np.ndarray,
        indices: np.ndarray,
        known: np.ndarray,
        exclude: Exclude,
        answers: list[UserRecommendations | None],
    ) -> None:
        """Answer the rows that sent a history: vectors from the tower, their movies hidden."""
        tower = self.index.history_tower
        assert tower is not None  # checked by _fresh_histories
        excluded = self.index.excluded(exclude)
        usable = np.flatnonzero(fresh.known_counts > 0)
        for start in range(0, len(usable), self.batch_size):
            positions = usable[start : start + self.batch_size]
            rows = fresh.rows[positions]
            padded = fresh.padded(positions, tower.max_history)
            vectors = tower.embed_histories(padded.items, padded.lengths)
            hidden = self._stored_hidden(indices[rows], known[rows], excluded)
            history_rows, history_items = fresh.hidden(positions)
            hidden = Hidden(
                np.concatenate([hidden.rows, history_rows]), np.concatenate([hidden.items, history_items])
            ).unique(self.n_items)
            values, items = self._top(vectors, torch.from_numpy(ks[rows]), hidden)
            triples = self._triples(values, items, ks[rows])
            for position, row, row_triples in zip(positions, rows, triples, strict=True):
                answers[row] = UserRecommendations(
                    int(ids[row]), int(ks[row]), False, row_triples, int(fresh.unknown[position])
                )
        for position in np.flatnonzero(fresh.known_counts == 0):
            row = fresh.rows[position]
            users = indices[row : row + 1] if known[row] else indices[:0]
            hidden_items = hidden_of(users, excluded).items
            answers[row] = UserRecommendations(
                int(ids[row]),
                int(ks[row]),
                True,
                self._popular_without(hidden_items, int(ks[row])),
                int(fresh.unknown[position]),
            )

    def _stored_hidden(self, users: np.ndarray, known: np.ndarray, excluded: SeenItems | None) -> Hidden:
        """What ``exclude`` hides for the known users among ``users`` (rows of the batch)."""
        known_rows = np.flatnonzero(known)
        stored = hidden_of(users[known], excluded)
        return Hidden(known_rows[stored.rows], stored.items)

    @torch.inference_mode()  # ~5% faster on batches: torch skips its autograd bookkeeping
    def top_items(
        self, users: np.ndarray, ks: np.ndarray, exclude: Exclude
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, item indices) [len(users), max(ks)], best first; excluded or missing: -inf.

        The array form of :meth:`recommend` for known user indices (``ks`` already clamped), for
        callers that write columns rather than triples (``recommend-all``). Read from the answer
        table where it holds them (the same numbers, computed when the model was packaged).
        """
        users = np.asarray(users, dtype=np.int64)
        if self.answers is not None and self.answers.answers(ks, exclude):
            return self.answers.top_items(users, int(ks.max()))
        vectors = self._scorer.user_vectors(torch.from_numpy(users))
        hidden = hidden_of(users, self.index.excluded(exclude))
        return self._top(vectors, torch.from_numpy(np.asarray(ks, dtype=np.int64)), hidden)

    def _top(
        self, vectors: torch.Tensor, ks: torch.Tensor, hidden: Hidden
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``ks`` of each user vector, the ``hidden`` movies never among them."""
        k_max = int(ks.max())
        if self.ann is None:
            return self._exact_top(vectors, k_max, hidden)
        return self._ann_top(vectors, ks, k_max, hidden)

    def _exact_top(
        self, vectors: torch.Tensor, k_max: int, hidden: Hidden
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score, mask and rank a few MB of users at a time: the scores stay in cache."""
        tops = []
        step = rows_per_chunk(self.n_items)
        for start in range(0, len(vectors), step):
            scores = self._scorer.score_vectors(vectors[start : start + step])
            hidden.of_row_range(start, start + step).hide(scores)
            tops.append(top_k(scores, k_max))
        if len(tops) == 1:
            return tops[0]
        return torch.cat([values for values, _ in tops]), torch.cat([items for _, items in tops])

    def _ann_top(
        self, vectors: torch.Tensor, ks: torch.Tensor, k_max: int, hidden: Hidden
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Over-fetch candidates from the approximate index, score them exactly, filter; exact where short."""
        n_rows = len(vectors)
        n_hidden = torch.from_numpy(hidden.counts(n_rows))
        wanted = torch.minimum(ks, self.n_items - n_hidden)  # what an exact answer would hold
        fetch = _power_of_two_at_least(ks + n_hidden).clamp(min=MIN_ANN_FETCH).clamp(max=self.n_items)
        values = torch.full((n_rows, k_max), float("-inf"))
        items = torch.zeros((n_rows, k_max), dtype=torch.int64)
        exact_rows = [torch.nonzero(fetch > MAX_ANN_FETCH).flatten()]
        for width in torch.unique(fetch[fetch <= MAX_ANN_FETCH]).tolist():
            rows = torch.nonzero(fetch == width).flatten()
            got_values, got_items = self._candidates_top(
                vectors[rows], int(width), min(k_max, int(width)), hidden.of_rows(rows.numpy(), n_rows)
            )
            short = (got_values != float("-inf")).sum(dim=1) < wanted[rows]
            exact_rows.append(rows[short])
            values[rows, : got_values.shape[1]] = got_values
            items[rows, : got_items.shape[1]] = got_items
        rows = torch.cat(exact_rows)
        if len(rows):
            values[rows], items[rows] = self._exact_top(
                vectors[rows], k_max, hidden.of_rows(rows.numpy(), n_rows)
            )
        return values, items

    def _candidates_top(
        self, vectors: torch.Tensor, width: int, k: int, hidden: Hidden
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` of the candidates of a ``width``-wide fetch, scored exactly, hidden ones -inf."""
        assert self.ann is not None
        candidates = torch.from_numpy(self.ann.search(vectors.numpy(), width))
        missing = candidates < 0
        candidates[missing] = 0
        item_vectors = self.index.item_embeddings[candidates]  # [n, width, dim]
        scores = torch.bmm(item_vectors, vectors.unsqueeze(2)).squeeze(2)
        if self._scorer.temperature != 1.0:
            scores /= self._scorer.temperature
        scores[missing] = float("-inf")
        if len(hidden.rows):
            keys = torch.arange(len(vectors)).unsqueeze(1) * self.n_items + candidates
            hidden_keys = torch.from_numpy(hidden.rows * self.n_items + hidden.items)
            scores[torch.isin(keys, hidden_keys)] = _MINUS_INF
        return ranked_top_k(scores, k, candidates)  # ties: the lower item index first, as exact

    def _triples(self, values: torch.Tensor, items: torch.Tensor, ks: np.ndarray) -> list[list[Triple]]:
        return self._triples_of_lists(values.tolist(), items.tolist(), ks.tolist())

    def _triples_of_lists(
        self, values: list[list[float]], items: list[list[int]], ks: list[int]
    ) -> list[list[Triple]]:
        movie_ids, titles = self._movie_ids, self._titles
        answers = []
        # Plain Python on the rows' lists: for the one-user requests of serving, every NumPy or
        # torch call on these tiny arrays costs more than the whole loop.
        for row_items, row_values, k in zip(items, values, ks, strict=True):
            # Excluded movies score -inf and sort last: cut the row before the first of them.
            count = k if row_values[k - 1] != _MINUS_INF else row_values.index(_MINUS_INF)
            answers.append(
                [
                    (movie_ids[item], score, titles[item])
                    for item, score in zip(row_items[:count], row_values[:count], strict=True)
                ]
            )
        return answers

    def _popularity_ranking(self, index: RetrievalIndex) -> tuple[list[Triple], np.ndarray]:
        """The cold-start answer: every movie by number of positives, ties in catalogue order."""
        scores = PopularityScorer(index.popularity).score(torch.zeros(1, dtype=torch.int64))[0]
        order = torch.sort(scores, descending=True, stable=True)
        ranking = [
            (self._movie_ids[item], score, self._titles[item])
            for item, score in zip(order.indices.tolist(), order.values.tolist(), strict=True)
        ]
        return ranking, order.indices.numpy()

    def _popular_without(self, hidden_items: np.ndarray, k: int) -> list[Triple]:
        """The first ``k`` of the popularity ranking that are not ``hidden_items``."""
        head = self._popular_items[: k + len(hidden_items)]
        kept = np.flatnonzero(~np.isin(head, hidden_items))[:k]
        return [self._popular[position] for position in kept.tolist()]


def _power_of_two_at_least(values: torch.Tensor) -> torch.Tensor:
    return torch.pow(2, torch.ceil(torch.log2(values.clamp(min=1).double()))).long()


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
