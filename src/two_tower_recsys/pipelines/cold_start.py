"""``eval.cold_start_share``: hold a share of the movies out of training, then measure new-movie quality.

The held-out movies (a seeded random share of the trained catalogue, ``seed``) lose every
rating: training, validation and test never see them, so the warm metrics are those of the
other movies. After training, each user's positives on the held-out movies are ranked among the
held-out movies (:mod:`~two_tower_recsys.evaluation.cold_start`) by

- ``two_tower``: the user vector against each held-out movie's *content* vector (what
  ``add-movies`` would give it); a model that reads ids only has nothing but its untrained id
  rows for them, and is measured on those, honestly near random;
- ``genre_popularity``: how popular the movie's genres are among all training positives;
- ``genre_affinity``: the user's own share of training positives in the movie's genres.

The results go into ``metrics.json`` under ``cold_start`` (with bootstrap intervals and the
paired difference of the two-tower against each baseline) and into the printed table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from two_tower_recsys.evaluation.bootstrap import BootstrapSettings
from two_tower_recsys.evaluation.cold_start import (
    ColdStartTask,
    bootstrap_bounds,
    genre_affinity_scores,
    genre_popularity_scores,
    metric_names,
    per_user_values,
)
from two_tower_recsys.models.components.content import NO_GENRES
from two_tower_recsys.preprocessing.processed import ProcessedDataset
from two_tower_recsys.settings import EvalConfig
from two_tower_recsys.utils.fileio import atomic_write_json, read_json

COLD_START = "cold_start"
TWO_TOWER, BASELINES = "two_tower", ("genre_popularity", "genre_affinity")


@dataclass(frozen=True)
class ColdStartSplit:
    warm: ProcessedDataset  # the dataset without any rating of the held-out movies
    cold_items: np.ndarray  # item indices of the held-out movies, ascending
    task: ColdStartTask  # every user's positives on them


def hold_out_movies(dataset: ProcessedDataset, share: float, seed: int) -> ColdStartSplit:
    rng = np.random.default_rng(seed)
    n_cold = max(1, round(share * dataset.n_items))
    cold = np.sort(rng.choice(dataset.n_items, size=n_cold, replace=False)).astype(np.int64)
    position = np.full(dataset.n_items, -1, dtype=np.int64)
    position[cold] = np.arange(n_cold)
    cold_list = cold.tolist()

    def warm(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter(~pl.col("item_idx").is_in(cold_list))

    positives = pl.concat(
        [f.select("user_idx", "item_idx") for f in (dataset.train, dataset.val, dataset.test)]
    )
    held = positives.filter(pl.col("item_idx").is_in(cold_list))
    task = ColdStartTask.from_pairs(
        held.get_column("user_idx").to_numpy().astype(np.int64),
        position[held.get_column("item_idx").to_numpy()],
    )
    warm_dataset = replace(
        dataset,
        train=warm(dataset.train),
        val=warm(dataset.val),
        test=warm(dataset.test),
        stats={**dataset.stats, "cold_start_movies": n_cold},
    )
    return ColdStartSplit(warm_dataset, cold, task)


def genre_matrix(titles: pl.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Multi-hot genres [movies, genres] of ``titles`` (in its row order), and the genre names."""
    fields = [[g for g in text.split("|") if g and g != NO_GENRES] for text in titles["genres"].fill_null("")]
    names = sorted({g for genres in fields for g in genres})
    column = {name: index for index, name in enumerate(names)}
    matrix = np.zeros((len(fields), len(names)), dtype=bool)
    for row, genres in enumerate(fields):
        matrix[row, [column[g] for g in genres]] = True
    return matrix, names


def evaluate_cold_start(
    split: ColdStartSplit,
    user_vectors: torch.Tensor,
    cold_vectors: torch.Tensor,
    eval_cfg: EvalConfig,
) -> dict[str, Any]:
    """Metrics of the two-tower and the baselines on the held-out movies, with intervals."""
    task, warm = split.task, split.warm
    names = metric_names(eval_cfg.recall_ks, eval_cfg.ndcg_ks)
    genres, _ = genre_matrix(warm.titles.sort("item_idx"))
    train_users = warm.train.get_column("user_idx").to_numpy()
    train_items = warm.train.get_column("item_idx").to_numpy()
    warm_positives = np.bincount(train_items, minlength=warm.n_items)
    user_genres = np.zeros((warm.n_users, genres.shape[1]))
    np.add.at(user_genres, train_users, genres[train_items])
    cold_genres = genres[split.cold_items]
    scores = {
        TWO_TOWER: user_vectors[torch.from_numpy(task.users)].float() @ cold_vectors.float().T,
        "genre_popularity": genre_popularity_scores(cold_genres, genres, warm_positives).expand(
            len(task.users), -1
        ),
        "genre_affinity": genre_affinity_scores(cold_genres, task.users, user_genres),
    }
    settings = BootstrapSettings(eval_cfg.bootstrap_resamples, eval_cfg.bootstrap_seed, eval_cfg.confidence)
    values = {
        model: per_user_values(score, task, eval_cfg.recall_ks, eval_cfg.ndcg_ks)
        for model, score in scores.items()
    }
    report: dict[str, Any] = {
        "movies": len(split.cold_items),
        "users": len(task.users),
        "positives": len(task.positives),
        "metrics": {},
        "intervals": {},
        "paired": {},
    }
    for model, model_values in values.items():
        low, high = bootstrap_bounds(model_values, settings)
        report["metrics"][model] = dict(zip(names, model_values.mean(axis=0).tolist(), strict=True))
        report["intervals"][model] = {
            n: [lo, hi] for n, lo, hi in zip(names, low.tolist(), high.tolist(), strict=True)
        }
    for baseline in BASELINES:
        difference = values[TWO_TOWER] - values[baseline]
        low, high = bootstrap_bounds(difference, settings)
        report["paired"][f"{TWO_TOWER}-{baseline}"] = {
            name: {"diff": diff, settings.interval_key: [lo, hi]}
            for name, diff, lo, hi in zip(
                names, difference.mean(axis=0).tolist(), low.tolist(), high.tolist(), strict=True
            )
        }
    return report


def record_cold_start(metrics_path: Path, report: dict[str, Any]) -> None:
    metrics = read_json(metrics_path) if metrics_path.exists() else {}
    atomic_write_json(metrics_path, {**metrics, COLD_START: report})


def format_cold_start_table(report: dict[str, Any]) -> str:
    models = [TWO_TOWER, *BASELINES]
    header = (
        f"cold start: {report['users']} users, {report['positives']} positives on "
        f"{report['movies']} held-out movies (ranked among them)"
    )
    lines = [
        header,
        f"{'metric':<11}" + "".join(f"{m:>24}" for m in models) + f"{'two_tower - genre_pop.':>26}",
    ]
    lines.append("-" * len(lines[1]))
    for name in report["metrics"][TWO_TOWER]:
        cells = []
        for model in models:
            low, high = report["intervals"][model][name]
            cells.append(f"{report['metrics'][model][name]:.4f} [{low:.3f}, {high:.3f}]".rjust(24))
        paired = report["paired"][f"{TWO_TOWER}-genre_popularity"][name]
        low, high = next(value for key, value in paired.items() if key != "diff")
        cells.append(f"{paired['diff']:+.4f} [{low:+.3f}, {high:+.3f}]".rjust(26))
        lines.append(f"{name:<11}" + "".join(cells))
    return "\n".join(lines)
