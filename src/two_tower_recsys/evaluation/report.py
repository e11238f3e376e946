"""``metrics.json``: every model's validation and test metrics for one dataset, with intervals.

Shape: ``{"dataset": {name, users, items, train_rows, val_rows, test_rows},
"val": {"popularity": {...}, "two_tower": {...}}, "test": {...},
"bootstrap": {"n_resamples", "seed", "confidence"},
"intervals": {"val": {"popularity": {"recall@50": [low, high], ...}, ...}, "test": {...}},
"paired": {"val": {"two_tower-popularity": {"recall@50": {"diff": d, "ci95": [low, high]}}}, ...}}``.

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


def dataset_summary(stats: dict[str, Any]) -> dict[str, Any]:
    return {key: stats[key] for key in DATASET_KEYS}


def update_metrics_file(
    path: Path,
    stats: dict[str, Any],
    model: str,
    metrics_by_split: dict[str, dict[str, float]],
    bootstrap_by_split: dict[str, SplitBootstrap] | None = None,
) -> dict[str, Any]:
    """Add (or replace) ``model``'s metrics, intervals and paired differences; returns the report.

    ``bootstrap_by_split[split]`` holds ``model``'s intervals and the paired differences of
    this run (each naming ``model``); without it, ``model`` is stored without intervals.
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
    for split, metrics in metrics_by_split.items():
        report.setdefault(split, {})[model] = metrics
    _forget(report, model)
    if bootstrap_by_split:
        _record_bootstrap(report, model, bootstrap_by_split)
    atomic_write_json(path, report)
    return report


def _forget(report: dict[str, Any], model: str) -> None:
    """Drop ``model``'s old intervals and every paired entry naming it."""
    for split_intervals in report.get("intervals", {}).values():
        split_intervals.pop(model, None)
    for split_pairs in report.get("paired", {}).values():
        for pair in [pair for pair in split_pairs if model in pair.split("-")]:
            del split_pairs[pair]


def _record_bootstrap(
    report: dict[str, Any], model: str, bootstrap_by_split: dict[str, SplitBootstrap]
) -> None:
    (settings,) = {bootstrap.settings for bootstrap in bootstrap_by_split.values()}
    if report.get("bootstrap") != settings.as_json():
        report.pop("intervals", None)
        report.pop("paired", None)
    report["bootstrap"] = settings.as_json()
    intervals = report.setdefault("intervals", {})
    paired = report.setdefault("paired", {})
    for split, bootstrap in bootstrap_by_split.items():
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
    settings = report.get("bootstrap")
    if settings and report.get("intervals"):
        blocks.append(
            f"[low, high]: {settings['confidence']:.0%} percentile bootstrap over users "
            f"({settings['n_resamples']} resamples, seed {settings['seed']})"
        )
    return "\n\n".join(blocks)


def _split_block(report: dict[str, Any], split: str) -> str:
    models = report[split]
    intervals = report.get("intervals", {}).get(split, {})
    pairs = report.get("paired", {}).get(split, {})
    names = list(dict.fromkeys(name for metrics in models.values() for name in metrics))
    columns: list[tuple[str, list[str]]] = []
    for model, metrics in models.items():
        cells = [_cell(metrics.get(name), intervals.get(model, {}).get(name), "") for name in names]
        columns.append((model, cells))
    for pair, differences in pairs.items():
        cells = [_cell(*_difference(differences.get(name)), "+") for name in names]
        columns.append((pair.replace("-", " - "), cells))
    label_width = max(len("metric"), *(len(name) for name in names))
    widths = [max(len(heading), *(len(cell) for cell in cells)) for heading, cells in columns]
    header = f"{'metric':<{label_width}}  " + "  ".join(
        f"{heading:>{width}}" for (heading, _), width in zip(columns, widths, strict=True)
    )
    users = report.get("dataset", {}).get(f"{split}_rows")
    lines = [f"{split}: {users} users" if users is not None else split, header, "-" * len(header)]
    for row, name in enumerate(names):
        lines.append(
            f"{name:<{label_width}}  "
            + "  ".join(f"{cells[row]:>{width}}" for (_, cells), width in zip(columns, widths, strict=True))
        )
    return "\n".join(lines)


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
