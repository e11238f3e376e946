"""Sampled and full softmax cross-entropy for retrieval.

Both treat each positive (user, movie) pair as a classification of the movie among candidates:
the other movies of the batch (``in_batch``) or the whole catalogue (``full``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
    logits = user_emb @ item_emb.T
    if temperature != 1.0:
        logits = logits / temperature
    if log_q is not None:
        logits = logits - log_q[item_idx].unsqueeze(0)
    duplicates = item_idx.unsqueeze(0) == item_idx.unsqueeze(1)
    duplicates.fill_diagonal_(False)
    logits = logits.masked_fill(duplicates, float("-inf"))
    labels = torch.arange(len(item_idx), device=logits.device)
    return F.cross_entropy(logits, labels)


def full_softmax_loss(
    user_emb: torch.Tensor, all_item_emb: torch.Tensor, item_idx: torch.Tensor, *, temperature: float = 1.0
) -> torch.Tensor:
    """Exact softmax over every catalogue movie."""
    logits = user_emb @ all_item_emb.T
    if temperature != 1.0:
        logits = logits / temperature
    return F.cross_entropy(logits, item_idx)
