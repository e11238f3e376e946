"""EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019).

score(u) = x_u @ B, where x_u is the user's binary history and the item-item weights
B = I - P / diag(P), P = (X^T X + l2 I)^-1, so diag(B) = 0 (a movie never explains itself).

At ML-20M size (27k movies) every matrix is 27k x 27k float32 = 3 GB: the Gram matrix is built
dense from sparse column blocks (never as one sparse product, which could hold all 744M pairs in
float64 with indices), and P comes from a Cholesky factorisation (``cholesky_inverse``), about
half the work of a general inverse. The Gram matrix is shared by every L2 weight of the grid.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

# Floats held at the peak of a grid search: the Gram matrix, the factor being inverted, its
# inverse and the best weights so far, each n_items^2 float32.
MATRICES_AT_PEAK = 4
# Gram columns built per sparse product: bounds the product's sparse result to ~32M entries.
GRAM_BLOCK_ELEMENTS = 1 << 25


def ease_memory_bytes(n_items: int) -> int:
    """Bytes of the item-item matrices EASE holds at its peak (grid search included)."""
    return MATRICES_AT_PEAK * n_items * n_items * 4


def gram_matrix(interactions: sp.csr_matrix) -> torch.Tensor:
    """X^T X as a dense float32 tensor: co-occurrence counts (exact up to 2^24 users)."""
    n_items = interactions.shape[1]
    by_item = interactions.T.tocsr()
    columns = interactions.tocsc()
    gram = torch.empty((n_items, n_items), dtype=torch.float32)
    block = max(1, GRAM_BLOCK_ELEMENTS // max(n_items, 1))
    for start in range(0, n_items, block):
        part = (by_item @ columns[:, start : start + block]).toarray()
        gram[:, start : start + block] = torch.from_numpy(part.astype(np.float32, copy=False))
    return gram


def ease_weights(gram: torch.Tensor, l2: float) -> torch.Tensor:
    """B = I - P / diag(P) with P = (gram + l2 I)^-1, by Cholesky; ``gram`` is left unchanged."""
    if l2 <= 0:
        raise ValueError(f"EASE's l2 must be positive (the Gram matrix is singular), got {l2}")
    regularised = gram.clone()
    regularised.diagonal().add_(l2)
    torch.linalg.cholesky(regularised, out=regularised)
    weights = torch.cholesky_inverse(regularised)  # P
    del regularised
    weights.div_(-weights.diagonal().clone())  # column j divided by -P_jj
    weights.diagonal().zero_()
    return weights


class EaseScorer:
    """score(u, m) = sum over the user's history h of B[h, m]: a sparse row times ``weights``.

    ``histories`` (users x movies, binary) is what each user's scores read: train for validation,
    train + validation for test, so one fitted ``weights`` is scored leak-free on either split.
    """

    def __init__(self, weights: torch.Tensor, histories: sp.csr_matrix):
        if histories.shape[1] != weights.shape[0]:
            raise ValueError(f"histories cover {histories.shape[1]} movies, weights {weights.shape[0]}")
        self.weights = weights
        self.histories = histories

    @property
    def n_items(self) -> int:
        return self.weights.shape[0]

    def score(self, users: torch.Tensor) -> torch.Tensor:
        rows = self.histories[users.numpy()]
        with warnings.catch_warnings():
            # torch calls CSR "beta"; the product is exact (tests compare it with a dense one).
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            sparse_rows = torch.sparse_csr_tensor(
                torch.from_numpy(rows.indptr.astype(np.int64)),
                torch.from_numpy(rows.indices.astype(np.int64)),
                torch.from_numpy(rows.data.astype(np.float32, copy=False)),
                size=rows.shape,
                check_invariants=False,  # scipy built it: sorted, in-range indices
            )
        # CSR x dense: about 1.2x faster than scipy's or torch's COO product here.
        return sparse_rows @ self.weights
