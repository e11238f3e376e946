"""The seed-averaged paired difference of two models: for ``bench_tower_comparison.py``.

A benchmark's figure, not something the package computes: ``two-tower evaluate`` scores one
trained model per run; comparing two towers over several training seeds is the benchmark's job.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from two_tower_recsys.evaluation.bootstrap import (
    BootstrapSettings,
    PairedDifference,
    paired_difference,
    value_labels,
)
from two_tower_recsys.evaluation.metrics import per_user_values


def seed_averaged_difference(
    first_by_seed: Sequence[np.ndarray],
    second_by_seed: Sequence[np.ndarray],
    metric_names: Sequence[str],
    settings: BootstrapSettings,
) -> dict[str, PairedDifference]:
    """``mean over seeds of metric(first) - metric(second)`` and its paired interval over users.

    Each argument holds one rank array per training seed, every array over the same users in the
    same order. Each user's value is averaged over the seeds first, so the interval is that of
    the seed-averaged difference: the users are resampled, never the seeds. With one seed this
    is exactly the pair of ``bootstrap_metrics``.
    """
    if len(first_by_seed) != len(second_by_seed) or not first_by_seed:
        raise ValueError(
            "need one rank array per seed for both models, "
            f"got {len(first_by_seed)} and {len(second_by_seed)}"
        )
    runs = [*first_by_seed, *second_by_seed]
    if len({len(ranks) for ranks in runs}) > 1:
        raise ValueError(f"runs were ranked on different users: {[len(ranks) for ranks in runs]}")

    def seed_mean(by_seed: Sequence[np.ndarray]) -> np.ndarray:
        return np.mean([per_user_values(ranks, metric_names) for ranks in by_seed], axis=0)

    differences = seed_mean(first_by_seed) - seed_mean(second_by_seed)
    labels = [value_labels(ranks, metric_names) for ranks in runs]
    return paired_difference(differences, labels, metric_names, settings)
