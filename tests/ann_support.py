"""Shared by the approximate-index tests: small catalogues and recall against exact."""

import numpy as np

EMBEDDING_KINDS = ["gaussian", "clustered with varied norms"]


def catalogue(kind: str, n_items: int = 4000, n_queries: int = 200, dim: int = 16):
    """(items, queries): Gaussian ones, or 20 clusters with log-normal norms (closer to trained ones)."""
    rng = np.random.default_rng(0)
    if kind == "gaussian":
        return (
            rng.standard_normal((n_items, dim)).astype(np.float32),
            rng.standard_normal((n_queries, dim)).astype(np.float32),
        )
    centres = rng.standard_normal((20, dim)).astype(np.float32)

    def around(n: int) -> np.ndarray:
        return centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)

    items = around(n_items) * rng.lognormal(0.0, 0.3, (n_items, 1)).astype(np.float32)
    return items, around(n_queries)


def top_k(searcher, queries: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """The best ``k`` of the searcher's candidates by exact inner product (as the recommender ranks)."""
    candidates = searcher.search(queries, k)
    assert (candidates >= 0).all()
    scores = np.einsum("qd,qcd->qc", queries, items[candidates])
    return np.take_along_axis(candidates, np.argsort(-scores, axis=1)[:, :k], axis=1)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)]))
