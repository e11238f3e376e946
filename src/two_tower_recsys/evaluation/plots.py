"""PNG plots of a training run: learning curves and Recall@K curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from two_tower_recsys.evaluation.bootstrap import BootstrapSettings, recall_curve_band
from two_tower_recsys.utils.fileio import atomic_path

DEFAULT_BANDS = BootstrapSettings()


def recall_curve(ranks: np.ndarray, max_k: int) -> np.ndarray:
    """Recall@K for K = 1..max_k in one pass: the share of ranks below each K."""
    counts = np.bincount(np.minimum(ranks, max_k), minlength=max_k + 1)[:max_k]
    return np.cumsum(counts) / max(len(ranks), 1)


def _save(figure: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def plot_learning_curves(
    epochs: Sequence[int],
    train_loss: Sequence[float],
    val_metrics: Mapping[str, Sequence[float]],
    path: Path,
    best_epoch: int | None = None,
) -> Path:
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(11, 4))
    loss_axis.plot(epochs, train_loss, marker="o", color="tab:red")
    loss_axis.set(title="Training loss", xlabel="epoch", ylabel="softmax cross-entropy")
    for name, values in val_metrics.items():
        metric_axis.plot(epochs, values, marker="o", label=name)
    metric_axis.set(title="Validation", xlabel="epoch", ylabel="metric value")
    if best_epoch is not None:
        for axis in (loss_axis, metric_axis):
            axis.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label="best epoch")
    metric_axis.legend()
    for axis in (loss_axis, metric_axis):
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(figure, path)


def plot_recall_at_k(
    ranks_by_model: Mapping[str, np.ndarray],
    path: Path,
    *,
    max_k: int = 200,
    split: str = "test",
    bands: BootstrapSettings | None = DEFAULT_BANDS,
) -> Path:
    """Each model's Recall@K curve for K = 1..max_k, with its bootstrap band unless ``bands`` is None."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    ks = np.arange(1, max_k + 1)
    for model, ranks in ranks_by_model.items():
        (line,) = axis.plot(ks, recall_curve(ranks, max_k), label=model)
        if bands is not None:
            low, high = recall_curve_band(ranks, max_k, bands)
            axis.fill_between(ks, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    band_note = f", {bands.confidence:.0%} bootstrap bands over users" if bands is not None else ""
    axis.set(
        title=f"Recall@K on {split}{band_note}",
        xlabel="K (movies recommended)",
        ylabel="Recall@K",
        xlim=(1, max_k),
        ylim=(0, None),
    )
    axis.grid(alpha=0.3)
    axis.legend()
    return _save(figure, path)


def plot_recall_by_segment(segments_by_model: Mapping[str, Mapping], path: Path) -> Path:
    """One panel per segmentation: each model's Recall@K per segment, with its bootstrap interval.

    ``segments_by_model``: metrics.json's ``"segments"`` section (docs/baselines.md).
    """
    models = list(segments_by_model)
    first = segments_by_model[models[0]]
    metric = first["metrics"][0]
    segmentations = list(first["by"])
    figure, axes = plt.subplots(1, len(segmentations), figsize=(6 * len(segmentations), 4.5), squeeze=False)
    width = 0.8 / len(models)
    for axis, segmentation in zip(axes[0], segmentations, strict=True):
        segments = list(first["by"][segmentation])
        positions = np.arange(len(segments))
        for offset, model in enumerate(models):
            entries = [segments_by_model[model]["by"].get(segmentation, {}).get(s, {}) for s in segments]
            values = np.array([entry.get(metric, np.nan) for entry in entries], dtype=float)
            bounds = np.array([entry.get("intervals", {}).get(metric, [np.nan, np.nan]) for entry in entries])
            errors = np.abs(bounds.T - values)  # matplotlib wants distances below and above
            axis.bar(positions + offset * width, values, width, yerr=errors, capsize=2, label=model)
        users = [first["by"][segmentation][s]["users"] for s in segments]
        axis.set_xticks(positions + width * (len(models) - 1) / 2)
        axis.set_xticklabels([f"{s}\n({n} users)" for s, n in zip(segments, users, strict=True)])
        axis.set(title=f"{metric} by {segmentation.replace('_', ' ')}", ylabel=metric, ylim=(0, None))
        axis.grid(alpha=0.3, axis="y")
    axes[0][0].legend()
    return _save(figure, path)
