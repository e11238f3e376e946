"""Top-k of each row of a score matrix, with one deterministic tie rule, fast for big batches.

The rule: higher score first; among equal scores, the lower item index first (catalogue order,
as the popularity ranking breaks its ties). ``torch.topk`` leaves ties in an unspecified order,
so where a row has ties among its best ``k + 1`` scores it is ranked again by a unique int64 key:
the float's bits mapped to an order-preserving integer in the high half, the item index
(reversed) in the low half. The values are always the row's ``k`` largest, exactly as
``torch.topk`` returns them.

For many rows and ``k`` much smaller than the row, one ``torch.topk`` over every score was the
slowest step of ``recommend-all`` (~100 ms of ~200 ms per 1,024 users x 27k movies, one thread).
:func:`top_k` then selects in two stages instead: split each row into ``BLOCK`` blocks, take the
``k``-th largest block maximum ``t``, and rank only the items scoring at least ``t`` (about
``1.1 k`` of 27k on trained-like or random scores). That is exact: ``k`` blocks have a maximum of
at least ``t``, so the ``k``-th best score is at least ``t`` and every item that can be in the top
``k``, ties included, is kept. A batch takes strided blocks (block ``j`` holds items ``j, j +
width, j + 2 width, ...``, so their maxima are ``BLOCK - 1`` vectorised element-wise maxima).

The few-row batches of serving (a one-user request above all) take the same two stages row by
row in NumPy, whose small operations cost a microsecond where torch's cost ten: 0.03 ms for one
user over 27k movies at k = 10, against 0.13 ms for ``torch.topk`` and its tie check. Where ``k``
is too large for the blocks to leave a small share, the threshold is the row's ``k``-th largest
score itself (``np.partition``).
"""

from __future__ import annotations

import numpy as np
import torch

# Where the vectorised two-stage path paid, over 27k movies on one thread: from 4 rows at k = 100
# and from 8 at k = 10 (128 users at k = 100: 18 -> 8 ms). Fewer rows go row by row in NumPy.
# ``k x BLOCKS x 4 <= n_items`` keeps the threshold high enough to leave few candidates (not
# measured further).
TWO_STAGE_MIN_ROWS = 8
ROW_BY_ROW_MAX_ROWS = TWO_STAGE_MIN_ROWS - 1
BLOCKS = 32  # strided blocks per row (the threshold is the k-th largest of ~n/32 block maxima)
# Score this many bytes of a batch at a time: a 1,024 x 27k batch (110 MB) falls out of cache
# between the product, the mask and the top-k; 16 MB chunks (~150 users) took half the time.
SCORE_CHUNK_BYTES = 16 << 20
_LOW_MASK = 0x7FFFFFFF


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, item indices) [rows, k] of float32 ``scores`` [rows, n_items], best first.

    Ties: the lower item index first (see the module docstring), ``-inf`` scores included. ``k``
    must be between 0 and ``n_items``; scores must not be NaN.
    """
    rows, n_items = scores.shape
    if not 0 <= k <= n_items:
        raise ValueError(f"k must be between 0 and {n_items}, got {k}")
    if k == 0 or rows == 0:
        return scores.new_empty((rows, k)), torch.zeros((rows, k), dtype=torch.int64)
    if rows <= ROW_BY_ROW_MAX_ROWS:
        return _row_by_row_top_k(scores, k)
    if uses_two_stages(rows, n_items, k):
        return _two_stage_top_k(scores, k)
    return _one_stage_top_k(scores, k)


def rows_per_chunk(n_items: int) -> int:
    """Rows of float32 scores over ``n_items`` to score, mask and rank at once."""
    return max(1, SCORE_CHUNK_BYTES // (4 * max(n_items, 1)))


def uses_two_stages(rows: int, n_items: int, k: int) -> bool:
    """Two stages for batches, and only when the ``k``-th block maximum leaves a small share."""
    return rows >= TWO_STAGE_MIN_ROWS and _blocks_pay(n_items, k)


def _blocks_pay(n_items: int, k: int) -> bool:
    return k * BLOCKS * 4 <= n_items


def ranked_top_k(
    values: torch.Tensor, k: int, positions: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of each row by (value, then lower position), via unique int64 keys.

    ``positions`` (int64, the shape of ``values``; default: the column) is the item index of
    each column, distinct within a row and below 2**31 - 1.
    """
    columns = torch.arange(values.shape[1]) if positions is None else positions
    keys = _ordered_bits(values).to(torch.int64) << 32 | (_LOW_MASK - columns)
    chosen = torch.topk(keys, k, dim=1).indices
    items = chosen if positions is None else positions.gather(1, chosen)
    return values.gather(1, chosen), items


def _ordered_bits(values: torch.Tensor) -> torch.Tensor:
    """int32 in the order of the float32 ``values``, -0.0 and 0.0 alike."""
    bits = (values.float() + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into 0.0
    return torch.where(bits < 0, bits ^ _LOW_MASK, bits)


def _row_by_row_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row in NumPy: a threshold, the items at or above it, ranked by (-score, item)."""
    scores_np = scores.numpy()
    rows, n_items = scores_np.shape
    values = np.empty((rows, k), dtype=np.float32)
    items = np.empty((rows, k), dtype=np.int64)
    width = n_items // BLOCKS
    for row, row_scores in enumerate(scores_np):
        if _blocks_pay(n_items, k):
            maxima = row_scores[: width * BLOCKS].reshape(BLOCKS, width).max(axis=1)  # contiguous blocks
            if width * BLOCKS < n_items:
                maxima = np.append(maxima, row_scores[width * BLOCKS :].max())
            threshold = np.partition(maxima, len(maxima) - k)[len(maxima) - k]
        else:
            threshold = np.partition(row_scores, n_items - k)[n_items - k]
        candidates = np.flatnonzero(row_scores >= threshold)
        candidate_scores = row_scores[candidates]
        # lexsort: the last key sorts first; -0.0 and 0.0 compare equal, so they tie on the item
        best = np.lexsort((candidates, -candidate_scores))[:k]
        values[row], items[row] = candidate_scores[best], candidates[best]
    return torch.from_numpy(values), torch.from_numpy(items)


def _one_stage_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``torch.topk`` of ``k + 1``: a row whose best ``k + 1`` hold no tie is already ranked."""
    top = torch.topk(scores, min(k + 1, scores.shape[1]), dim=1)
    best = top.values.numpy()  # NumPy: for one user, each small torch operation costs more
    tied = np.flatnonzero((best[:, 1:] == best[:, :-1]).any(axis=1))
    values, items = top.values[:, :k].contiguous(), top.indices[:, :k].contiguous()
    if len(tied):
        rows = torch.from_numpy(tied)
        values[rows], items[rows] = ranked_top_k(scores[rows], k)
    return values, items


def _two_stage_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows, n_items = scores.shape
    width = n_items // BLOCKS
    whole = width * BLOCKS
    maxima = scores[:, :whole].unflatten(1, (BLOCKS, width)).amax(dim=1)
    if whole < n_items:  # the tail is one more block
        maxima = torch.cat([maxima, scores[:, whole:].amax(dim=1, keepdim=True)], dim=1)
    n_blocks = maxima.shape[1]  # the k-th largest maximum; NumPy's partition is ~5x torch.topk's
    threshold = np.partition(maxima.numpy(), n_blocks - k, axis=1)[:, n_blocks - k]
    # Gather the items at or above each row's threshold into a [rows, widest] matrix, -inf padded
    # (real candidates are all >= threshold > -inf, or the row keeps all its items: no padding).
    scores_np = scores.contiguous().numpy()
    kept = np.flatnonzero(scores_np >= threshold[:, None])
    row, column = np.divmod(kept, n_items)
    counts = np.bincount(row, minlength=rows)
    slot = np.arange(len(kept)) - np.repeat(np.cumsum(counts) - counts, counts)
    candidates = np.full((rows, int(counts.max())), -np.inf, dtype=np.float32)
    candidates[row, slot] = scores_np.ravel()[kept]
    positions = np.zeros(candidates.shape, dtype=np.int64)
    positions[row, slot] = column
    return ranked_top_k(torch.from_numpy(candidates), k, torch.from_numpy(positions))
