"""``metrics.json``: every model's validation and test metrics for one dataset, with intervals.

Shape: ``{"dataset": {name, users, items, train_rows, val_rows, test_rows},
"val": {"popularity": {...}, "two_tower": {...}}, "test": {...},
"bootstrap": {"n_resamples", "seed", "confidence"},
"intervals": {"val": {"popularity": {"recall@50": [low, high], ...}, ...}, "test": {...}},
"paired": {"val": {"two_tower-popularity": {"recall@50": {"diff": d, "ci95": [low, high]}}}, ...},
"beyond_accuracy": {model: {"coverage@10": ..., ...}}, "segments": {model: {...}},
"baselines": {model: {"parameter", "grid", "validation", "chosen", "fit_seconds"}},
"refit": {model: {"fitted_on": "train+val", "train_rows", "epochs" (two-tower only)}}}``. The
last four are per model (see :data:`MODEL_SECTIONS`); ``"refit"`` names the models whose test
figures come from a refit on train + validation (their validation figures do not).

Models are added beside the ones already there as long as the dataset is the same; a different
dataset starts a new file. A model's intervals are stored and replaced with its metrics. A paired
entry compares two models evaluated in the same run; re-evaluating either model alone drops it,
since it would no longer describe the metrics beside it. Intervals computed with other bootstrap
settings than the recorded ones are dropped too, so ``"bootstrap"`` describes every interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from two_tower_recsys.evaluation.bootstrap import SplitBootstrap
from two_tower_recsys.utils.fileio import atomic_write_json, read_json

DATASET_KEYS = ("name", "users", "items", "train_rows", "val_rows", "test_rows")
METRICS_FILE = "metrics.json"
SPLITS = ("val", "test")
TABLE_WIDTH = 110  # wider, and the paired differences go below the models


def dataset_summary(stats: dict[str, Any]) -> dict[str, Any]:
    return {key: stats[key] for key in DATASET_KEYS}


# Sections keyed by model, replaced with its metrics: the test top-K lists' beyond-accuracy
# metrics, results by segment, a baseline's regularisation chosen on validation, and what a
# model tested after a refit on train + validation was fitted on (trainer.refit).
BEYOND_ACCURACY, SEGMENTS, BASELINES, REFIT = "beyond_accuracy", "segments", "baselines", "refit"
MODEL_SECTIONS = (BEYOND_ACCURACY, SEGMENTS, BASELINES, REFIT)


def record_models(
    path: Path,
    stats: dict[str, Any],
    metrics_by_model: dict[str, dict[str, dict[str, float]]],
    bootstrap_by_split: dict[str, SplitBootstrap] | None = None,
    sections: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Add (or replace) several models evaluated in one run, in one write; returns the report.

    ``sections[section][model]`` (``section`` in :data:`MODEL_SECTIONS`) replaces the model's
    entry there; a re-evaluated model without one loses its old entry.
    """
    dataset = dataset_summary(stats)
    report: dict[str, Any] = {"dataset": dataset, "val": {}, "test": {}}
    if path.exists():
        try:
            previous = read_json(path)
        except ValueError:
            previous = {}
        if previous.get("dataset") == dataset:
            report = previous
    for model, metrics_by_split in metrics_by_model.items():
        for split, metrics in metrics_by_split.items():
            report.setdefault(split, {})[model] = metrics
        _forget(report, model)
    if bootstrap_by_split:
        _record_bootstrap(report, list(metrics_by_model), bootstrap_by_split)
    for section, by_model in (sections or {}).items():
        if section not in MODEL_SECTIONS:
            raise ValueError(f"unknown metrics.json section {section!r}; expected one of {MODEL_SECTIONS}")
        report.setdefault(section, {}).update(by_model)
    atomic_write_json(path, report)
    return report


def _forget(report: dict[str, Any], model: str) -> None:
    """Drop ``model``'s old intervals, per-model sections and every paired entry naming it."""
    for split_intervals in report.get("intervals", {}).values():
        split_intervals.pop(model, None)
    for split_pairs in report.get("paired", {}).values():
        for pair in [pair for pair in split_pairs if model in pair.split("-")]:
            del split_pairs[pair]
    for section in MODEL_SECTIONS:
        report.get(section, {}).pop(model, None)


def _record_bootstrap(
    report: dict[str, Any], models: list[str], bootstrap_by_split: dict[str, SplitBootstrap]
) -> None:
    (settings,) = {bootstrap.settings for bootstrap in bootstrap_by_split.values()}
    if report.get("bootstrap") != settings.as_json():
        report.pop("intervals", None)
        report.pop("paired", None)
    report["bootstrap"] = settings.as_json()
    intervals = report.setdefault("intervals", {})
    paired = report.setdefault("paired", {})
    for split, bootstrap in bootstrap_by_split.items():
        for model in models:
            intervals.setdefault(split, {})[model] = {
                metric: list(bounds) for metric, bounds in bootstrap.intervals[model].items()
            }
        for pair, differences in bootstrap.paired.items():
            paired.setdefault(split, {})[pair] = {
                metric: {"diff": difference.diff, settings.interval_key: list(difference.interval)}
                for metric, difference in differences.items()
            }


def format_table(report: dict[str, Any]) -> str:
    """A plain-text comparison, one block per split: metrics down, models (and pairs) across.

    Each value carries its bootstrap interval when the report has one, e.g.
    ``0.2720 [0.237, 0.307]``; a paired column shows the signed difference and its interval.
    Two models and their pair fit in 80 columns.
    """
    blocks = [_split_block(report, split) for split in SPLITS if report.get(split)]
    if not blocks:
        return "(no metrics)"
    blocks += _beyond_accuracy_block(report) + _segment_blocks(report) + _baselines_block(report)
    blocks += _refit_block(report)
    settings = report.get("bootstrap")
    if settings and report.get("intervals"):
        blocks.append(
            f"[low, high]: {settings['confidence']:.0%} percentile bootstrap over users "
            f"({settings['n_resamples']} resamples, seed {settings['seed']})"
        )
    return "\n\n".join(blocks)


def _grid(title: str, row_label: str, rows: list[tuple[str, list[str]]], headings: list[str]) -> str:
    """A right-aligned text table: one labelled row per entry of ``rows``, one column per heading."""
    label_width = max(len(row_label), *(len(label) for label, _ in rows))
    widths = [
        max(len(heading), *(len(cells[column]) for _, cells in rows))
        for column, heading in enumerate(headings)
    ]
    header = f"{row_label:<{label_width}}  " + "  ".join(
        f"{heading:>{width}}" for heading, width in zip(headings, widths, strict=True)
    )
    lines = [title, header, "-" * len(header)]
    for label, cells in rows:
        lines.append(
            f"{label:<{label_width}}  "
            + "  ".join(f"{cell:>{width}}" for cell, width in zip(cells, widths, strict=True))
        )
    return "\n".join(lines)


def _beyond_accuracy_block(report: dict[str, Any]) -> list[str]:
    by_model = report.get(BEYOND_ACCURACY) or {}
    if not by_model:
        return []
    models = list(by_model)
    names = list(dict.fromkeys(name for metrics in by_model.values() for name in metrics))
    rows = [(name, [_plain_cell(by_model[model].get(name)) for model in models]) for name in names]
    return [_grid("test top-K lists, beyond accuracy (docs/baselines.md)", "metric", rows, models)]


def _segment_blocks(report: dict[str, Any]) -> list[str]:
    """One compact table per metric: segments down, models across, each with its interval."""
    by_model = report.get(SEGMENTS) or {}
    if not by_model:
        return []
    models = list(by_model)
    first = next(iter(by_model.values()))
    blocks = []
    for metric in first["metrics"]:
        rows = []
        for segmentation, segments in first["by"].items():
            for segment, entry in segments.items():
                cells = [str(entry["users"])]
                for model in models:
                    cell = by_model[model]["by"].get(segmentation, {}).get(segment, {})
                    cells.append(_cell(cell.get(metric), cell.get("intervals", {}).get(metric), ""))
                rows.append((f"{segmentation} {segment}", cells))
        title = f"test {metric} by segment ({first['note']})"
        blocks.append(_grid(title, "segment", rows, ["users", *models]))
    return blocks


def _baselines_block(report: dict[str, Any]) -> list[str]:
    lines = [
        f"{model}: {entry['parameter']}={entry['chosen']:g} chosen on validation {entry['selected_by']} "
        f"from {[float(value) for value in entry['grid']]}; fit in {entry['fit_seconds']:.1f} s"
        for model, entry in (report.get(BASELINES) or {}).items()
    ]
    return ["\n".join(lines)] if lines else []


def _refit_block(report: dict[str, Any]) -> list[str]:
    refits = report.get(REFIT) or {}
    if not refits:
        return []
    described = [
        f"{model} ({entry['epochs']} epochs)" if "epochs" in entry else model
        for model, entry in refits.items()
    ]
    return [f"test after a refit on train + validation: {', '.join(described)}"]


def _plain_cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _split_block(report: dict[str, Any], split: str) -> str:
    """Models and pairs side by side; when that is wider than TABLE_WIDTH, the pairs below."""
    models = report[split]
    intervals = report.get("intervals", {}).get(split, {})
    pairs = report.get("paired", {}).get(split, {})
    names = list(dict.fromkeys(name for metrics in models.values() for name in metrics))
    model_columns = [
        (model, [_cell(metrics.get(name), intervals.get(model, {}).get(name), "") for name in names])
        for model, metrics in models.items()
    ]
    pair_columns = [
        (pair.replace("-", " - "), [_cell(*_difference(differences.get(name)), "+") for name in names])
        for pair, differences in pairs.items()
    ]
    users = report.get("dataset", {}).get(f"{split}_rows")
    title = f"{split}: {users} users" if users is not None else split
    together = _columns_grid(title, names, model_columns + pair_columns)
    if not pair_columns or max(len(line) for line in together.splitlines()) <= TABLE_WIDTH:
        return together
    return "\n".join(
        [
            _columns_grid(title, names, model_columns),
            "",
            _columns_grid(f"{split}: paired differences", names, pair_columns),
        ]
    )


def _columns_grid(title: str, names: list[str], columns: list[tuple[str, list[str]]]) -> str:
    rows = [(name, [cells[row] for _, cells in columns]) for row, name in enumerate(names)]
    return _grid(title, "metric", rows, [heading for heading, _ in columns])


def _difference(entry: dict[str, Any] | None) -> tuple[float | None, list[float] | None]:
    if entry is None:
        return None, None
    bounds = next((value for key, value in entry.items() if key != "diff"), None)  # "ci95"
    return entry["diff"], bounds


def _cell(value: float | None, bounds: list[float] | None, sign: str) -> str:
    """``0.2720 [0.237, 0.307]``; with ``sign="+"`` the value is signed (a difference)."""
    if value is None:
        return ""
    text = f"{value:{sign}.4f}"
    if bounds is not None:
        text += f" [{bounds[0]:.3f}, {bounds[1]:.3f}]"
    return text
