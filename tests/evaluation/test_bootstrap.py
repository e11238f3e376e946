"""Bootstrap intervals over users: checked against plain loops over the same resamples."""

import numpy as np
import pytest
from seed_average import seed_averaged_difference

from two_tower_recsys.evaluation import bootstrap
from two_tower_recsys.evaluation.bootstrap import (
    BootstrapSettings,
    bootstrap_metrics,
    group_users,
    recall_curve_band,
    resampled_group_counts,
    resampled_means,
    value_labels,
)
from two_tower_recsys.evaluation.metrics import ndcg_at_k, per_user_values, recall_at_k, summarize
from two_tower_recsys.evaluation.plots import recall_curve

NAMES = ["recall@10", "recall@50", "recall@100", "ndcg@10", "ndcg@50"]
SETTINGS = BootstrapSettings(n_resamples=300, seed=3)


def metric_by_name(ranks: np.ndarray, name: str) -> float:
    kind, _, k = name.partition("@")
    return (recall_at_k if kind == "recall" else ndcg_at_k)(ranks, int(k))


def synthetic_ranks(n_users: int, seed: int, mean_rank: float = 40.0) -> np.ndarray:
    return np.random.default_rng(seed).geometric(1.0 / mean_rank, n_users) - 1


def reference_resamples(ranks_by_model: dict[str, np.ndarray], settings: BootstrapSettings):
    """Each resample as explicit users, from the very group counts the fast path multiplies."""
    models = list(ranks_by_model)
    groups = group_users(
        np.concatenate([per_user_values(ranks_by_model[m], NAMES) for m in models], axis=1),
        [value_labels(ranks_by_model[m], NAMES) for m in models],
    )
    for counts in resampled_group_counts(groups.sizes, settings):
        for row in counts:
            yield np.repeat(groups.representatives, row)


def reference_bounds(samples: list[list[float]], confidence: float) -> np.ndarray:
    tail = (1 - confidence) / 2
    return np.quantile(np.array(samples), [tail, 1 - tail], axis=0).T


HAND_MADE = np.array([0, 0, 1, 3, 5, 9, 10, 12, 30, 49, 50, 51, 77, 99, 100, 150, 400, 2, 8, 60])


def test_users_share_a_group_exactly_when_they_share_every_metric_value():
    labels = value_labels(HAND_MADE, NAMES)
    values = per_user_values(HAND_MADE, NAMES)
    same_label = labels[:, None] == labels[None, :]
    same_values = (values[:, None, :] == values[None, :, :]).all(axis=2)
    assert (same_label == same_values).all()
    # Ranks 50, 51, 60, 77, 99 count for recall@100 alone: one group; 100, 150, 400 for nothing: one.
    assert len(np.unique(labels)) == len(np.unique(HAND_MADE)) - 4 - 2
    groups = group_users(values, [labels])
    assert groups.sizes.sum() == len(HAND_MADE)
    assert (groups.values == values[groups.representatives]).all()


def test_intervals_agree_with_a_slow_loop_over_the_same_resampled_users():
    ranks = HAND_MADE
    samples = [
        [metric_by_name(ranks[users], name) for name in NAMES]
        for users in reference_resamples({"model": ranks}, SETTINGS)
    ]
    expected = reference_bounds(samples, SETTINGS.confidence)

    result = bootstrap_metrics({"model": ranks}, NAMES, SETTINGS)

    assert len(samples) == SETTINGS.n_resamples
    for name, (low, high) in zip(NAMES, expected, strict=True):
        assert result.intervals["model"][name] == pytest.approx((low, high), rel=1e-12, abs=1e-12)


def test_paired_intervals_agree_with_a_slow_loop_over_the_same_resampled_users():
    first, second = synthetic_ranks(60, seed=1), synthetic_ranks(60, seed=2, mean_rank=80)
    samples = [
        [metric_by_name(first[users], name) - metric_by_name(second[users], name) for name in NAMES]
        for users in reference_resamples({"a": first, "b": second}, SETTINGS)
    ]
    expected = reference_bounds(samples, SETTINGS.confidence)

    result = bootstrap_metrics({"a": first, "b": second}, NAMES, SETTINGS, pairs=[("a", "b")])

    for name, (low, high) in zip(NAMES, expected, strict=True):
        difference = result.paired["a-b"][name]
        assert difference.interval == pytest.approx((low, high), rel=1e-12, abs=1e-12)
        assert difference.diff == pytest.approx(metric_by_name(first, name) - metric_by_name(second, name))


def test_group_counts_resample_users_as_drawing_them_with_replacement_does():
    # The bootstrap variance of a mean is the plug-in variance / n: for Recall@K, p(1 - p) / n.
    ranks = synthetic_ranks(500, seed=4)
    values = per_user_values(ranks, NAMES)
    means = resampled_means(
        group_users(values, [value_labels(ranks, NAMES)]), BootstrapSettings(n_resamples=4000, seed=0)
    )
    expected_sd = values.std(axis=0) / np.sqrt(len(ranks))
    # 4000 resamples estimate a standard deviation within ~1.1%; 5% is > 4 of those.
    assert means.std(axis=0) == pytest.approx(expected_sd, rel=0.05)
    assert means.mean(axis=0) == pytest.approx(values.mean(axis=0), abs=0.2 * expected_sd.min())


def test_a_constant_models_interval_is_a_point():
    ranks = np.full(200, 7)
    metrics = summarize(ranks, (10, 50, 100), (10, 50))
    result = bootstrap_metrics({"constant": ranks}, NAMES, SETTINGS)
    for name in NAMES:
        low, high = result.intervals["constant"][name]
        assert low == pytest.approx(metrics[name], rel=1e-12)
        assert high == pytest.approx(metrics[name], rel=1e-12)


def test_a_model_paired_with_itself_differs_by_exactly_zero():
    ranks = synthetic_ranks(300, seed=5)
    result = bootstrap_metrics({"a": ranks, "b": ranks.copy()}, NAMES, SETTINGS, pairs=[("a", "b")])
    for name in NAMES:
        assert result.paired["a-b"][name].diff == 0.0
        assert result.paired["a-b"][name].interval == (0.0, 0.0)
    assert result.intervals["a"] == result.intervals["b"]


def test_intervals_contain_the_estimate_and_narrow_with_more_users():
    widths = {}
    for n_users in (200, 5000):
        ranks = synthetic_ranks(n_users, seed=6)
        metrics = summarize(ranks, (10, 50, 100), (10, 50))
        intervals = bootstrap_metrics({"model": ranks}, NAMES, SETTINGS).intervals["model"]
        for name in NAMES:
            low, high = intervals[name]
            assert low < metrics[name] < high
        widths[n_users] = np.array([intervals[name][1] - intervals[name][0] for name in NAMES])
    # 25x the users: intervals ~5x narrower.
    assert (widths[5000] < widths[200] / 3).all()


def test_pairing_removes_the_noise_two_correlated_models_share():
    first = synthetic_ranks(2000, seed=7)
    second = first + (np.random.default_rng(8).random(2000) < 0.1) * 20  # 10% of users ranked 20 lower
    result = bootstrap_metrics({"a": first, "b": second}, NAMES, SETTINGS, pairs=[("a", "b")])
    paired_low, paired_high = result.paired["a-b"]["recall@50"].interval
    low, high = result.intervals["a"]["recall@50"]
    assert paired_low > 0  # a real, if small, gain
    # Unpaired, the difference would be at least as uncertain as one model's metric.
    assert paired_high - paired_low < (high - low) / 2


def test_a_models_intervals_do_not_depend_on_the_models_beside_it():
    ranks = synthetic_ranks(400, seed=9)
    alone = bootstrap_metrics({"a": ranks}, NAMES, SETTINGS)
    beside = bootstrap_metrics(
        {"a": ranks, "b": synthetic_ranks(400, seed=10)}, NAMES, SETTINGS, [("a", "b")]
    )
    assert alone.intervals["a"] == beside.intervals["a"]


def test_chunking_the_resamples_changes_nothing(monkeypatch):
    ranks = synthetic_ranks(500, seed=11)
    whole = bootstrap_metrics({"a": ranks}, NAMES, SETTINGS)
    monkeypatch.setattr(bootstrap, "CHUNK_ELEMENTS", 1000)  # ~20 resamples per chunk
    assert bootstrap_metrics({"a": ranks}, NAMES, SETTINGS) == whole


def test_the_recall_curve_band_holds_the_curve_and_matches_the_recall_intervals():
    ranks = synthetic_ranks(3000, seed=12)
    settings = BootstrapSettings(n_resamples=1000, seed=0)
    low, high = recall_curve_band(ranks, 200, settings)
    curve = recall_curve(ranks, 200)
    assert low.shape == high.shape == (200,)
    assert (low <= curve).all() and (curve <= high).all()
    intervals = bootstrap_metrics({"a": ranks}, NAMES, settings).intervals["a"]
    for k in (10, 50, 100):
        # Other draws (the band groups users by rank below 200): equal up to Monte Carlo error.
        assert (low[k - 1], high[k - 1]) == pytest.approx(intervals[f"recall@{k}"], abs=0.004)


def test_a_constant_models_band_is_its_curve():
    ranks = np.full(50, 30)
    low, high = recall_curve_band(ranks, 100, SETTINGS)
    assert (low == recall_curve(ranks, 100)).all() and (high == low).all()


def test_models_ranked_on_different_users_are_refused():
    with pytest.raises(ValueError, match="different users"):
        bootstrap_metrics({"a": np.zeros(3, int), "b": np.zeros(4, int)}, NAMES, SETTINGS)
    with pytest.raises(ValueError, match="no ranks for"):
        bootstrap_metrics({"a": np.zeros(3, int)}, NAMES, SETTINGS, pairs=[("a", "b")])


def test_no_users_give_nan_bounds_like_their_nan_metrics():
    empty = np.zeros(0, dtype=np.int64)
    result = bootstrap_metrics({"a": empty, "b": empty}, NAMES, SETTINGS, pairs=[("a", "b")])
    assert all(np.isnan(result.intervals["a"][name]).all() for name in NAMES)
    assert all(np.isnan(result.paired["a-b"][name].diff) for name in NAMES)
    assert np.isnan(recall_curve_band(empty, 10, SETTINGS)).all()


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"n_resamples": 0}, "n_resamples"), ({"confidence": 1.0}, "confidence")]
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BootstrapSettings(**kwargs)


def test_settings_name_their_interval_key():
    assert BootstrapSettings().interval_key == "ci95"
    assert BootstrapSettings(confidence=0.9).interval_key == "ci90"


def test_one_seed_averaged_difference_is_the_paired_difference():
    first, second = synthetic_ranks(80, seed=11), synthetic_ranks(80, seed=12, mean_rank=70)
    pooled = seed_averaged_difference([first], [second], NAMES, SETTINGS)
    paired = bootstrap_metrics({"a": first, "b": second}, NAMES, SETTINGS, pairs=[("a", "b")]).paired["a-b"]
    for name in NAMES:
        assert pooled[name].diff == pytest.approx(paired[name].diff, rel=1e-12, abs=1e-12)
        assert pooled[name].interval == pytest.approx(paired[name].interval, rel=1e-12, abs=1e-12)


def test_seed_averaged_difference_resamples_users_of_the_per_user_seed_means():
    # Two seeds per model: a user's value is the mean of its two runs, then users are resampled.
    firsts = [synthetic_ranks(50, seed=s) for s in (21, 22)]
    seconds = [synthetic_ranks(50, seed=s, mean_rank=90) for s in (23, 24)]
    runs = [*firsts, *seconds]
    groups = group_users(
        np.concatenate([per_user_values(ranks, NAMES) for ranks in runs], axis=1),
        [value_labels(ranks, NAMES) for ranks in runs],
    )
    samples = []
    for counts in resampled_group_counts(groups.sizes, SETTINGS):
        for row in counts:
            users = np.repeat(groups.representatives, row)
            samples.append(
                [
                    np.mean([metric_by_name(r[users], name) for r in firsts])
                    - np.mean([metric_by_name(r[users], name) for r in seconds])
                    for name in NAMES
                ]
            )
    expected = reference_bounds(samples, SETTINGS.confidence)

    pooled = seed_averaged_difference(firsts, seconds, NAMES, SETTINGS)

    for name, (low, high) in zip(NAMES, expected, strict=True):
        assert pooled[name].interval == pytest.approx((low, high), rel=1e-9, abs=1e-12)
        expected_diff = np.mean([metric_by_name(r, name) for r in firsts]) - np.mean(
            [metric_by_name(r, name) for r in seconds]
        )
        assert pooled[name].diff == pytest.approx(expected_diff, abs=1e-12)


def test_seed_averaged_difference_refuses_unmatched_runs():
    ranks = synthetic_ranks(30, seed=1)
    with pytest.raises(ValueError, match="one rank array per seed"):
        seed_averaged_difference([ranks, ranks], [ranks], NAMES, SETTINGS)
    with pytest.raises(ValueError, match="different users"):
        seed_averaged_difference([ranks], [ranks[:20]], NAMES, SETTINGS)
