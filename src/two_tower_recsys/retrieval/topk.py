"""Top-k of each row of a score matrix, with one deterministic tie rule, fast for big batches.

The rule: higher score first; among equal scores, the lower item index first (catalogue order,
as the popularity ranking breaks its ties). ``torch.topk`` leaves ties in an unspecified order,
so where a row has ties among its best ``k + 1`` scores it is ranked again by a unique int64 key:
the float's bits mapped to an order-preserving integer in the high half, the item index
(reversed) in the low half. The values are always the row's ``k`` largest, exactly as
``torch.topk`` returns them.

For many rows and ``k`` much smaller than the row, one ``torch.topk`` over every score was the
slowest step of ``recommend-all`` (~100 ms of ~200 ms per 1,024 users x 27k movies, one thread).
:func:`top_k` then selects in two stages instead. With ``width = n_items // ITEMS_PER_BLOCK``,
block ``j`` holds the items ``j, j + width, j + 2 width, ...`` (strided, so the ``width`` block
maxima are ``ITEMS_PER_BLOCK - 1`` vectorised element-wise maxima; the leftover tail is one more
block). Take the ``k``-th largest block maximum ``t`` and rank only the items scoring at least
``t`` (about ``1.1 k`` of 27k on trained-like or random scores). That is exact: ``k`` blocks have
a maximum of at least ``t``, so the ``k``-th best score is at least ``t`` and every item that can
be in the top ``k``, ties included, is kept. It needs ``k`` at most the number of blocks; it is
taken only where ``k`` is at most a quarter of them.

Fewer rows (the one-user requests of serving) take one ``torch.topk`` of ``k + 1`` and the tie
check: the blocks' threshold saves ~0.03 ms there, nothing beside a request's few milliseconds,
and a second path for few rows once hid a defect (k above the number of blocks crashed at 27k
movies). Where ``k`` is too large for the blocks to leave a small share, batches take that path
too.
"""

from __future__ import annotations

import numpy as np
import torch

# Where the two-stage path paid, over 27k movies on one thread: from 4 rows at k = 100 and from 8
# at k = 10 (128 users at k = 100: 18 -> 8 ms). ``k <= blocks / 4`` keeps the threshold high
# enough to leave few candidates.
TWO_STAGE_MIN_ROWS = 8
ITEMS_PER_BLOCK = 32
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
    return k * 4 <= n_items // ITEMS_PER_BLOCK


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
    width = n_items // ITEMS_PER_BLOCK  # the number of whole blocks
    whole = width * ITEMS_PER_BLOCK
    maxima = scores[:, :whole].unflatten(1, (ITEMS_PER_BLOCK, width)).amax(dim=1)
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
