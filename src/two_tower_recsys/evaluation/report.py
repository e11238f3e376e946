"""``metrics.json``: every model's validation and test metrics for one dataset.

Shape: ``{"dataset": {name, users, items, train_rows, val_rows, test_rows},
"val": {"popularity": {...}, "two_tower": {...}}, "test": {...}}``. Models are added beside the
ones already there as long as the dataset is the same; a different dataset starts a new file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from two_tower_recsys.utils.fileio import atomic_write_json, read_json

DATASET_KEYS = ("name", "users", "items", "train_rows", "val_rows", "test_rows")
METRICS_FILE = "metrics.json"


def dataset_summary(stats: dict[str, Any]) -> dict[str, Any]:
    return {key: stats[key] for key in DATASET_KEYS}


def update_metrics_file(
    path: Path, stats: dict[str, Any], model: str, metrics_by_split: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """Add (or replace) ``model``'s metrics in ``path``; returns the whole report."""
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
    atomic_write_json(path, report)
    return report


def format_table(report: dict[str, Any]) -> str:
    """A plain-text comparison table: one row per (split, model)."""
    rows = [
        (split, model, metrics)
        for split in ("val", "test")
        for model, metrics in report.get(split, {}).items()
    ]
    if not rows:
        return "(no metrics)"
    names = list(rows[0][2])
    header = f"{'split':<5} {'model':<11} " + " ".join(f"{name:>10}" for name in names)
    lines = [header, "-" * len(header)]
    for split, model, metrics in rows:
        lines.append(
            f"{split:<5} {model:<11} " + " ".join(f"{metrics.get(n, float('nan')):>10.4f}" for n in names)
        )
    return "\n".join(lines)
