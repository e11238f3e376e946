"""Implicit-feedback ALS (Hu, Koren and Volinsky 2008) with the ``implicit`` library, on the CPU.

Fitted on the binary train matrix with confidence alpha for a positive (1 for the rest); its user and movie
factors are scored like the ID tower's embeddings (an :class:`EmbeddingScorer`), and like them the
user factors only know the train positives.
"""

from __future__ import annotations

import warnings

import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

from two_tower_recsys.retrieval.scorers import EmbeddingScorer


def fit_als(
    interactions: sp.csr_matrix,
    *,
    factors: int,
    regularization: float,
    iterations: int,
    alpha: float,
    seed: int,
) -> EmbeddingScorer:
    """ALS on ``interactions`` (users x movies, binary), one thread per core torch uses.

    BLAS runs single-threaded inside: implicit parallelises over users itself, and a threaded
    BLAS under it is what its warning is about (and is several times slower).
    """
    from implicit.cpu.als import AlternatingLeastSquares  # ~0.7 s to import: only when ALS is fitted

    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*threadpool.*", category=RuntimeWarning)
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            num_threads=torch.get_num_threads(),
            random_state=seed,
        )
        model.fit(interactions, show_progress=False)
    return EmbeddingScorer(torch.from_numpy(model.user_factors), torch.from_numpy(model.item_factors))
