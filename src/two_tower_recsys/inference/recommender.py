"""The request layer: top-K movies for a batch of user ids, shared by the CLI, recommend-all and serving.

It validates the ids, ``k`` and histories, answers each user from the answer table
(``answer_table.py``) where it holds them, else from the exact core or an approximate index
(``candidates.py``: the same exact scores, hiding and tie rule), and unknown users with the
popularity ranking (``answers.py``). Answers, one per user and in the order asked:

- ``recommendations``: ``(movieId, score, title)`` triples, best first. ``exclude`` says which
  movies are never recommended: ``rated`` (the default: every movie the user rated, positive or
  not), ``positives`` (only the positives: what evaluation hides) or ``none``. A user who has
  rated almost the whole catalogue gets fewer than ``k`` (never an excluded movie, never a
  ``-inf`` score).
- ``k`` above the catalogue size is clamped to it; the answer reports the clamped ``k``.
- A user id the model has never seen is not an error: the answer is the popularity ranking
  (score = the movie's number of positives; ties in catalogue order) with ``fallback=True``.
- ``histories`` (a user tower that reads histories only, e.g. ``model.user_tower=sequence``): a
  list of movieIds per user, most recent last, or None for a user who sends none. The user vector
  is then computed from that history (for a known user it replaces the stored one), its movies
  are never recommended (besides what ``exclude`` hides for a known user), and the answer counts
  the movieIds skipped as unknown (``unknown_history_items``). A history with no known movie gets
  the popularity ranking, flagged ``fallback=True``. An ID user tower cannot read a history:
  asking is a RequestError.
- With an approximate index (``index="pq"`` or ``"hnsw"``), answers differ from the exact ones only
  where the index missed one of a user's exact top-k (``candidates.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from two_tower_recsys.artifacts.store import RetrievalIndex, load_index
from two_tower_recsys.errors import ConfigError, RequestError
from two_tower_recsys.inference.answer_table import AnswerTable, read_answer_table
from two_tower_recsys.inference.answers import AnswerFormatter, UserRecommendations
from two_tower_recsys.inference.candidates import (
    IndexKind,
    ann_params,
    ann_searcher,
    candidate_source,
    default_ann_params,
)
from two_tower_recsys.inference.exact_ranking import Hidden, hidden_of
from two_tower_recsys.inference.fresh_histories import FreshHistories, IdLookup
from two_tower_recsys.inference.validation import history_arrays, k_array, user_id_array
from two_tower_recsys.retrieval.approximate import AnnParams, CandidateSearcher
from two_tower_recsys.retrieval.seen import SeenItems
from two_tower_recsys.settings import EXCLUDE_CHOICES, INDEX_CHOICES, InferConfig

Exclude = Literal["rated", "positives", "none"]  # one of EXCLUDE_CHOICES


class Recommender:
    """Loads an index once and answers :meth:`recommend` for any number of users."""

    def __init__(
        self,
        index: RetrievalIndex,
        *,
        batch_size: int = InferConfig.batch_size,
        ann: CandidateSearcher | None = None,
        max_history_items: int = InferConfig.max_history_items,
        answers: AnswerTable | None = None,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
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
        self._candidates = candidate_source(self._scorer, index.item_embeddings, ann)
        self._users = IdLookup(index.user_ids)
        self._movies = IdLookup(index.item_ids)
        self._format = AnswerFormatter(index)

    @classmethod
    def from_artifacts(
        cls,
        directory: Path,
        *,
        batch_size: int = InferConfig.batch_size,
        index: IndexKind = InferConfig.index,
        ann_params: AnnParams | None = None,
        max_history_items: int = InferConfig.max_history_items,
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
        exclude: Exclude = InferConfig.exclude,
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
            triples = self._format.triples(values, items, ks[rows])
            for row, row_triples in zip(rows.tolist(), triples, strict=True):
                answers[row] = UserRecommendations(id_list[row], k_list[row], False, row_triples)
        if len(known_rows) < len(ids):
            for row in np.flatnonzero(~known).tolist():
                if answers[row] is None:  # not answered from a history
                    k_row = k_list[row]
                    answers[row] = UserRecommendations(id_list[row], k_row, True, self._format.popular(k_row))
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
        triples = self._format.triples_of_lists(
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
        if not self.index.reads_histories:
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
            triples = self._format.triples(values, items, ks[rows])
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
                self._format.popular_without(hidden_items, int(ks[row])),
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
        return self._candidates.top(vectors, ks, hidden)
