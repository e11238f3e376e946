"""Sampled and full softmax cross-entropy for retrieval, with hand-written gradients.

Each treats each positive (user, movie) pair as a classification of the movie among candidates:
the other movies of the batch (``in_batch``), the whole catalogue (``full``) or the batch's
movies plus a sampled pool shared by the batch (``mixed``, training/negatives.py draws the pool).

Why not plain autograd: the logits are a large dense matrix (4096 x 4096 in batch, 4096 x 27k
for the full catalogue) and autograd keeps several same-sized temporaries alive per step. On
CPU the cost is dominated by allocating and touching that memory, not by arithmetic. Here the
forward pass computes loss and gradients together in one reused buffer (the softmax is turned
into its own gradient in place), in row chunks for the full catalogue so memory stays bounded;
backward only scales the stored gradients (the mixed loss's batch x (batch + pool) logits are one
buffer: 50 MB at 2048 x 6144). Tests check each against autograd on the definition.
"""

from __future__ import annotations

import torch

FULL_SOFTMAX_CHUNK_ROWS = 1024  # 1024 x 27k float32 logits = 110 MB per chunk


def duplicate_positions(item_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) of every pair of DIFFERENT batch positions holding the same movie.

    Sorting finds the repeats without a B x B comparison; a movie appearing c times adds
    c * (c - 1) pairs, a few thousand per 4096-pair batch even with MovieLens' popularity skew.
    """
    order = torch.argsort(item_idx, stable=True)
    sorted_items = item_idx[order]
    starts_group = torch.ones_like(sorted_items, dtype=torch.bool)
    starts_group[1:] = sorted_items[1:] != sorted_items[:-1]
    group = torch.cumsum(starts_group, 0) - 1
    sizes = torch.bincount(group)
    group_start = torch.cumsum(sizes, 0) - sizes
    size_of = sizes[group]  # for each sorted position, the size of its group
    repeated = size_of > 1
    if not bool(repeated.any()):
        empty = torch.empty(0, dtype=torch.long, device=item_idx.device)
        return empty, empty
    positions = torch.nonzero(repeated).squeeze(1)
    partners_per_position = size_of[positions]
    rows_sorted = torch.repeat_interleave(positions, partners_per_position)
    first = torch.repeat_interleave(group_start[group[positions]], partners_per_position)
    offsets = torch.arange(len(rows_sorted), device=rows_sorted.device) - torch.repeat_interleave(
        torch.cumsum(partners_per_position, 0) - partners_per_position, partners_per_position
    )
    cols_sorted = first + offsets
    different = rows_sorted != cols_sorted
    return order[rows_sorted[different]], order[cols_sorted[different]]


def matching_columns(
    pair_rows: torch.Tensor, pair_movies: torch.Tensor, column_movies: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) for every (row, movie) pair and every column holding that movie.

    A sort and two binary searches: no rows x columns comparison. The result has one entry per
    match, so it is as long as the hits (a few per pair at most), not the logits.
    """
    order = torch.argsort(column_movies)
    sorted_movies = column_movies[order]
    first = torch.searchsorted(sorted_movies, pair_movies, side="left")
    hits = torch.searchsorted(sorted_movies, pair_movies, side="right") - first
    rows = torch.repeat_interleave(pair_rows, hits)
    hit_starts = torch.cumsum(hits, 0) - hits
    offsets = torch.arange(len(rows), device=rows.device) - torch.repeat_interleave(hit_starts, hits)
    return rows, order[torch.repeat_interleave(first, hits) + offsets]


def _into_loss_gradient(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """Turn ``logits`` in place into ``softmax(logits) * scale``; return each row's log-normaliser.

    One exp per element (``torch.logsumexp`` followed by a softmax would take two).
    """
    row_max = logits.amax(dim=1, keepdim=True)
    exponentials = logits.sub_(row_max).exp_()
    sums = exponentials.sum(dim=1, keepdim=True)
    exponentials.mul_(scale / sums)
    return (row_max + sums.log()).squeeze(1)


def _into_smoothed_loss_gradient(
    logits: torch.Tensor,
    positive_columns: torch.Tensor,
    masked: tuple[torch.Tensor, torch.Tensor],
    scale: float,
    label_smoothing: float,
    smoothing_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum over rows of the cross-entropy over each row's candidates; ``logits`` becomes its gradient.

    A row's candidates are its columns but the ``masked`` (row, column) pairs (distinct, never a
    row's positive column). The target distribution is 1 - ε on the positive plus ε spread over
    the candidates (the positive included) in proportion to ``smoothing_weights`` (one per column;
    evenly without them). In place, ``logits`` turns into d loss / d logits times
    ``scale * batch``: softmax over the candidates minus the target distribution, times
    ``scale``; 0 at the masked pairs.
    """
    masked_rows, masked_columns = masked
    rows = torch.arange(len(logits), device=logits.device)
    # Flat positions: take / index_fill_ on them are about twice as fast as 2-D advanced indexing
    # (a few hundred thousand masked pairs per step with hidden earlier positives).
    flat_logits = logits.view(-1)
    masked_flat = masked_rows * logits.shape[1] + masked_columns
    if label_smoothing:
        weights = smoothing_weights
        if weights is None:
            weights = torch.ones(logits.shape[1], dtype=logits.dtype, device=logits.device)
        weights = weights.to(logits.dtype)
        masked_weights = weights[masked_columns]
        # each row's total weight over its candidates, and its weighted sum of their logits
        row_weight = weights.sum().expand(len(logits)).index_add(0, masked_rows, -masked_weights)
        weighted_sum = torch.mv(logits, weights).index_add_(
            0, masked_rows, -masked_weights * flat_logits.take(masked_flat)
        )
    flat_logits.index_fill_(0, masked_flat, float("-inf"))
    positive = logits[rows, positive_columns]
    log_norm = _into_loss_gradient(logits, scale)  # softmax * scale; 0 where masked
    total = (log_norm - (1 - label_smoothing) * positive).sum()
    if label_smoothing:
        total = total - label_smoothing * (weighted_sum / row_weight).sum()
        logits.addr_(scale * label_smoothing / row_weight, weights, alpha=-1)  # minus ε w_j / W_row
        flat_logits.index_fill_(0, masked_flat, 0.0)
    logits[rows, positive_columns] -= scale * (1 - label_smoothing)
    return total


def _scaled_logits(
    user_emb: torch.Tensor, column_emb: torch.Tensor, inv_t: float, log_q: torch.Tensor | None
) -> torch.Tensor:
    """``U C^T / T``, minus ``log_q`` per column when given (one ``addmm`` pass), in a new buffer."""
    if log_q is None:
        return torch.mm(user_emb, column_emb.T).mul_(inv_t)
    return torch.addmm(-log_q.unsqueeze(0), user_emb, column_emb.T, alpha=inv_t)


class _InBatchSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, user_emb, item_emb, item_idx, log_q_batch, temperature):
        batch = user_emb.shape[0]
        inv_t = 1.0 / temperature
        with torch.no_grad():
            logits = _scaled_logits(user_emb, item_emb, inv_t, log_q_batch)
            rows, cols = duplicate_positions(item_idx)
            logits[rows, cols] = float("-inf")
            positive = logits.diagonal().clone()
            # d loss / d (U V^T) = (softmax - one_hot) / (B T), built in place in the logits buffer.
            scale = inv_t / batch
            log_norm = _into_loss_gradient(logits, scale)
            loss = (log_norm - positive).mean()
            grad_logits = logits
            grad_logits.diagonal().sub_(scale)
            ctx.save_for_backward(grad_logits @ item_emb, grad_logits.T @ user_emb)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_user, grad_item = ctx.saved_tensors
        return grad_user * grad_loss, grad_item * grad_loss, None, None, None


class _CandidateSoftmax(torch.autograd.Function):
    """Softmax over shared candidate columns; row i's positive is column i."""

    @staticmethod
    def forward(ctx, user_emb, candidate_emb, log_q_candidates, masked, smoothing_weights, settings):
        temperature, label_smoothing = settings
        batch = user_emb.shape[0]
        inv_t = 1.0 / temperature
        with torch.no_grad():
            logits = _scaled_logits(user_emb, candidate_emb, inv_t, log_q_candidates)
            positives = torch.arange(batch, device=user_emb.device)
            total = _into_smoothed_loss_gradient(
                logits, positives, masked, inv_t / batch, label_smoothing, smoothing_weights
            )
            grad_logits = logits
            ctx.save_for_backward(grad_logits @ candidate_emb, grad_logits.T @ user_emb)
        return total / batch

    @staticmethod
    def backward(ctx, grad_loss):
        grad_user, grad_candidates = ctx.saved_tensors
        return grad_user * grad_loss, grad_candidates * grad_loss, None, None, None, None


class _FullSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, user_emb, all_item_emb, item_idx, temperature, label_smoothing, hidden_rows, hidden_items
    ):
        batch = user_emb.shape[0]
        inv_t = 1.0 / temperature
        grad_user = torch.empty_like(user_emb)
        grad_items = torch.zeros_like(all_item_emb)
        total = user_emb.new_zeros(())
        scale = inv_t / batch
        with torch.no_grad():
            for start in range(0, batch, FULL_SOFTMAX_CHUNK_ROWS):
                users = user_emb[start : start + FULL_SOFTMAX_CHUNK_ROWS]
                targets = item_idx[start : start + FULL_SOFTMAX_CHUNK_ROWS]
                logits = _scaled_logits(users, all_item_emb, inv_t, None)
                in_chunk = (hidden_rows >= start) & (hidden_rows < start + len(targets))
                masked = (hidden_rows[in_chunk] - start, hidden_items[in_chunk])
                total += _into_smoothed_loss_gradient(logits, targets, masked, scale, label_smoothing)
                grad_logits = logits
                torch.mm(grad_logits, all_item_emb, out=grad_user[start : start + len(targets)])
                grad_items.addmm_(grad_logits.T, users)
            ctx.save_for_backward(grad_user, grad_items)
        return total / batch

    @staticmethod
    def backward(ctx, grad_loss):
        grad_user, grad_items = ctx.saved_tensors
        return grad_user * grad_loss, grad_items * grad_loss, None, None, None, None, None


def in_batch_softmax_loss(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    item_idx: torch.Tensor,
    *,
    temperature: float = 1.0,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax over the batch's movies; row i's positive is column i.

    ``log_q``: log in-batch sampling probability of each catalogue movie. Subtracting it from
    the logits (Yi et al. 2019, logQ correction) stops popular movies, which are sampled as
    negatives more often, from being pushed down more than they deserve.
    A movie that appears several times in the batch is not a negative for its own positives:
    those duplicate columns are masked.
    """
    log_q_batch = log_q[item_idx] if log_q is not None else None
    return _InBatchSoftmax.apply(user_emb, item_emb, item_idx, log_q_batch, float(temperature))


def full_softmax_loss(
    user_emb: torch.Tensor,
    all_item_emb: torch.Tensor,
    item_idx: torch.Tensor,
    *,
    temperature: float = 1.0,
    label_smoothing: float = 0.0,
    hidden: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Exact softmax over every catalogue movie.

    ``hidden``: (row, movie) pairs that are not candidates for that row (e.g. a sequence target's
    earlier movies: positives of the same user, never ranked for them when evaluated or served);
    they get no probability and no gradient. A row's own target must not be among them.
    ``label_smoothing`` ε: the target distribution is 1 - ε on the positive plus ε spread evenly
    over the row's candidates (the positive included), as ``torch.nn.functional.cross_entropy``
    spreads it over all classes.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    empty = torch.zeros(0, dtype=torch.int64, device=item_idx.device)
    hidden_rows, hidden_items = hidden if hidden is not None else (empty, empty)
    settings = (float(temperature), float(label_smoothing))
    return _FullSoftmax.apply(user_emb, all_item_emb, item_idx, *settings, hidden_rows, hidden_items)


def mixed_softmax_loss(
    user_emb: torch.Tensor,
    candidate_emb: torch.Tensor,
    candidate_idx: torch.Tensor,
    *,
    temperature: float = 1.0,
    label_smoothing: float = 0.0,
    log_q: torch.Tensor | None = None,
    hidden: tuple[torch.Tensor, torch.Tensor] | None = None,
    smoothing_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax over candidate columns shared by the batch: row i's positive is column i.

    The candidates are the batch's own movies (columns 0..B-1, ``candidate_idx[:B]`` the rows'
    positives) followed by any others (mixed negative sampling: a pool drawn for the step,
    training/negatives.py). ``log_q``: per column, subtracted from its logit (the log of how often
    the movie is expected among the candidates; training/negatives.py says why). A row's
    candidates are its columns but those holding its own positive movie (other than column i:
    duplicates of the positive are not negatives, the accidental hits) or one of its ``hidden``
    movies ((row, movie) pairs, distinct, never the row's positive; as in
    :func:`full_softmax_loss`); those get no probability and no gradient. ``label_smoothing`` ε:
    1 - ε on the positive, ε spread over the row's candidates (columns; a movie drawn twice is two
    candidates) in proportion to ``smoothing_weights`` (one per column; evenly without them).
    Sampled candidates over-represent the movies they are drawn for, so weights of 1 / (expected
    appearances) make the spread an estimate of :func:`full_softmax_loss`'s even spread over
    the catalogue (training/negatives.py).
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    batch = user_emb.shape[0]
    rows = torch.arange(batch, device=candidate_idx.device)
    pair_rows, pair_movies = rows, candidate_idx[:batch]
    if hidden is not None:
        pair_rows, pair_movies = torch.cat([pair_rows, hidden[0]]), torch.cat([pair_movies, hidden[1]])
    masked_rows, masked_columns = matching_columns(pair_rows, pair_movies, candidate_idx)
    not_positive = masked_rows != masked_columns
    masked_rows, masked_columns = masked_rows[not_positive], masked_columns[not_positive]
    settings = (float(temperature), float(label_smoothing))
    masked = (masked_rows, masked_columns)
    return _CandidateSoftmax.apply(user_emb, candidate_emb, log_q, masked, smoothing_weights, settings)
