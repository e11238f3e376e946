"""The binary user x movie matrix that the classical baselines are fitted on and read."""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp


def interaction_matrix(pairs: pl.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """1.0 at (user_idx, item_idx) for every positive in ``pairs`` (duplicates count once), float32."""
    users = pairs.get_column("user_idx").to_numpy().astype(np.int64)
    items = pairs.get_column("item_idx").to_numpy().astype(np.int64)
    matrix = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items), dtype=np.float32
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix
