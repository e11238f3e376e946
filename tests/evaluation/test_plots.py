"""The Recall@K plot: curves with their bootstrap bands, written as a PNG."""

import numpy as np

from two_tower_recsys.evaluation import plots
from two_tower_recsys.evaluation.bootstrap import BootstrapSettings, recall_curve_band


def test_recall_at_k_plot_draws_each_models_band(tmp_path, monkeypatch):
    ranks = {
        "a": np.random.default_rng(0).geometric(1 / 20, 300) - 1,
        "b": np.random.default_rng(1).geometric(1 / 60, 300) - 1,
    }
    settings = BootstrapSettings(n_resamples=200)
    drawn = []  # what reaches matplotlib, which still draws it
    original = plots.plt.Axes.fill_between

    def record(axis, x, low, high, **kwargs):
        drawn.append((np.asarray(low), np.asarray(high)))
        return original(axis, x, low, high, **kwargs)

    monkeypatch.setattr(plots.plt.Axes, "fill_between", record)
    path = plots.plot_recall_at_k(ranks, tmp_path / "recall.png", max_k=100, bands=settings)

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(drawn) == 2
    for (low, high), model_ranks in zip(drawn, ranks.values(), strict=True):
        expected_low, expected_high = recall_curve_band(model_ranks, 100, settings)
        assert (low == expected_low).all() and (high == expected_high).all()
        assert (high > low).any()


def test_recall_at_k_plot_without_bands(tmp_path):
    path = plots.plot_recall_at_k({"a": np.arange(50)}, tmp_path / "plain.png", max_k=60, bands=None)
    assert path.stat().st_size > 5_000


def test_recall_by_segment_plot_draws_each_models_bar_and_survives_an_empty_segment(tmp_path, monkeypatch):
    def entry(value):
        return {
            "metrics": ["recall@50", "ndcg@50"],
            "by": {
                "history_length": {
                    "<=10": {
                        "users": 4,
                        "recall@50": value,
                        "intervals": {"recall@50": [value - 0.1, value + 0.1]},
                    },
                    ">200": {"users": 0},
                },
                "movie_popularity": {
                    "head": {"users": 4, "recall@50": value, "intervals": {"recall@50": [0, 1]}}
                },
            },
        }

    heights = []
    original = plots.plt.Axes.bar

    def record(axis, x, height, *args, **kwargs):
        heights.append(list(np.asarray(height)))
        return original(axis, x, height, *args, **kwargs)

    monkeypatch.setattr(plots.plt.Axes, "bar", record)
    path = plots.plot_recall_by_segment({"a": entry(0.5), "b": entry(0.25)}, tmp_path / "segments.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # one bar series per model and panel; the empty segment has no bar (NaN)
    assert heights[0][0] == 0.5 and np.isnan(heights[0][1]) and heights[1][0] == 0.25
    assert heights[2:] == [[0.5], [0.25]]
