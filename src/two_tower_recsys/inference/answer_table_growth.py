"""The answer table after ``add-movies``: the previous table merged with the new movies' scores.

Rebuilding the table scores every user against the whole catalogue (130 s at ML-20M size, for
1,000 movies added to 27,278). Appending movies changes nothing else: the users' vectors, the old
movies' vectors, the temperature and the hidden (rated) movies are those the previous table was
ranked from. The table's order is total (higher score first, then the lower catalogue index), so
a user's top-``k`` of the grown catalogue is the top-``k`` of (their previous top-``k`` + the new
movies): a movie the previous table left out had ``k`` old movies ahead of it, and they are still
ahead. That holds for the ``-inf`` entries too (hidden movies padding a user with fewer than
``k`` movies left: the lowest-index ones, still the lowest), and for ties: a new movie's index is
above every old one, so it displaces an entry only by scoring strictly higher.

So only the new movies are scored (users x new movies, a block of users at a time), ranked by the
core (:func:`top_k`) and merged with the previous rows by its tie rule (:func:`ranked_top_k`); a
row whose best new score does not beat its last entry is kept as it is. The merge holds only
where the previous table is the exact answer for the index before the movies were added;
:func:`previous_answer_table` and :meth:`GrownCatalogue.usable_for` say when it is, and the
package is rebuilt in full otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from two_tower_recsys.artifacts.store import RetrievalIndex, index_id
from two_tower_recsys.inference.answer_table import AnswerTable, TopItems, read_answer_table
from two_tower_recsys.inference.batch import one_torch_thread
from two_tower_recsys.inference.exact_ranking import hidden_of
from two_tower_recsys.retrieval.scorers import EmbeddingScorer
from two_tower_recsys.retrieval.topk import ranked_top_k, top_k
from two_tower_recsys.utils.fileio import verify_manifest


@dataclass(frozen=True)
class GrownCatalogue:
    """The answer table of the index before movies were appended at ``first_new_item`` onwards."""

    table: AnswerTable
    first_new_item: int

    def n_new(self, index: RetrievalIndex) -> int:
        return index.n_items - self.first_new_item

    def usable_for(self, index: RetrievalIndex, k: int, exclude: str) -> str | None:
        """None if the grown table of ``index`` (top ``k`` under ``exclude``) can be merged from
        this one; else why not (the table is then rebuilt in full)."""
        if exclude != self.table.exclude:  # it hides other movies: its rows are other rankings
            return f"the previous table hides exclude={self.table.exclude}, not {exclude}"
        if len(self.table.items) != len(index.user_ids):
            return "the previous table holds other users"
        if not 0 < self.first_new_item < index.n_items:
            return "no movie was appended"
        # Its rows must hold each user's top-k of the old catalogue: a table cut shorter than k
        # (infer.answer_table_k raised since) lacks entries the new movies cannot supply, unless
        # it held the whole old catalogue. A longer one is cut: a top-k is a prefix of a top-K.
        if self.table.k < min(k, self.first_new_item):
            return f"the previous table holds the top {self.table.k}, fewer than {k}"
        return None


def previous_answer_table(packaged_index: Path, index_manifest: dict[str, Any]) -> AnswerTable | None:
    """The answer table of the package's index copy ``packaged_index``, if that copy is (verified)
    the index whose manifest is ``index_manifest``; else None: no package, a package of another
    index (retrained, or another directory's), no table, or a damaged package."""
    try:
        manifest = verify_manifest(Path(packaged_index), "package")
    except ValueError:
        return None
    if index_id(manifest) != index_id(index_manifest):
        return None
    return read_answer_table(Path(packaged_index), manifest)


def grown_top_items(
    index: RetrievalIndex,
    grown: GrownCatalogue,
    k: int,
    *,
    batch_size: int,
    progress: bool = True,
) -> Iterator[tuple[np.ndarray, TopItems]]:
    """``(user indices, (scores, item indices))`` of every user, in batches, best first: the
    previous table's rows merged with the new movies (``grown.usable_for`` must have said None).

    Memory: one batch of users x (new movies + k) scores and int64 keys.
    """
    first_new, n_users = grown.first_new_item, len(index.user_ids)
    old_width = min(grown.table.k, k)
    # The new movies only, scored by the core's scorer: the same product and temperature.
    scorer = EmbeddingScorer(index.user_embeddings, index.item_embeddings[first_new:], index.temperature)
    excluded = index.excluded(grown.table.exclude)
    starts = range(0, n_users, batch_size)
    with (
        tqdm(total=len(starts), desc="answer table: new movies", unit="batch", disable=not progress) as bar,
        # Small operations on one batch: torch's threads cost more than they gain on them (4.6x
        # slower on 2 threads of 2 busy cores, ~1 s per batch, than on one).
        one_torch_thread(when=True),
    ):
        for start in starts:
            rows = slice(start, min(start + batch_size, n_users))
            users = np.arange(rows.start, rows.stop, dtype=np.int64)
            old_scores = torch.from_numpy(np.array(grown.table.scores[rows, :old_width]))
            old_items = torch.from_numpy(grown.table.items[rows, :old_width].astype(np.int64))
            new_scores = scorer.score_vectors(scorer.user_vectors(torch.from_numpy(users)))
            # Nobody has rated a movie just added, so nothing is hidden here; the mask costs little
            # and keeps the merge exact should a new movie ever be among a user's excluded ones.
            hidden = hidden_of(users, excluded)
            is_new = hidden.items >= first_new
            new_scores.numpy()[hidden.rows[is_new], hidden.items[is_new] - first_new] = -np.inf
            yield users, _merged(old_scores, old_items, new_scores, first_new, k)
            bar.update()


@torch.inference_mode()
def _merged(
    old_scores: torch.Tensor, old_items: torch.Tensor, new_scores: torch.Tensor, first_new: int, k: int
) -> TopItems:
    """Top-``k`` of each row of (old entries + new movies) by the core's tie rule, as NumPy."""
    rows, old_width = old_scores.shape
    scores = torch.full((rows, k), -np.inf, dtype=torch.float32)
    items = torch.zeros((rows, k), dtype=torch.int64)
    if old_width == k:
        # A new movie enters a row only by beating its last entry (a tie goes to the lower index:
        # the old movie); the other rows are kept as they are.
        changed = torch.nonzero(new_scores.amax(dim=1) > old_scores[:, -1]).flatten()
        scores[:], items[:] = old_scores, old_items
    else:  # the previous table held the whole old catalogue, shorter than k: every row grows
        changed = torch.arange(rows)
    if len(changed):
        # The new movies' own top-k first (the core's ranking, ties to the lower index), then the
        # two best-first lists merged: 2k keys a row to rank rather than k + every new movie.
        new_top, new_items = top_k(new_scores[changed], min(k, new_scores.shape[1]))
        candidates = torch.cat([old_scores[changed], new_top], dim=1)
        positions = torch.cat([old_items[changed], new_items + first_new], dim=1)
        scores[changed], items[changed] = ranked_top_k(candidates, k, positions)
    return scores.numpy(), items.numpy().astype(np.int32)
