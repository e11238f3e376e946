"""How much of a model's top-K the per-user temporal split fills with movies that did not exist
yet: a diagnostic of the protocol, not a model change.

    .venv/bin/python benchmarks/bench_future_movies.py --zip ../shared/data/ml-latest-small.zip \\
        --seeds 0,1,2 [--model sequence=experiment=sequence] [--model id=model.user_tower=id] \\
        [--out benchmarks/results/ensemble] [--read-test]

Each user's validation (test) movie is their own newest positive but one (newest), yet the
catalogue it is ranked in holds every movie of the data set, including movies nobody had rated
positively before that moment (a user whose last rating was in 2001 is ranked against 2015
releases): the "future items" leak of leave-last-out splits (Ji et al., "A Critical Study on
Data Leakage in Recommender System Offline Evaluation", TOIS 2023). Per model and seed this
reports, for the users of a split:

- the share of the top-50 (the user's history excluded: the evaluator's own top-K) that are movies
  whose first positive by anyone (train, validation or test) comes after the held-out movie's
  timestamp;
- Recall@50 and NDCG@10 by the one evaluator, then with those movies left out of that user's
  ranking (the held-out movie never is: its own positive is at that timestamp), and the paired
  difference, seed-averaged over users with its interval.

Availability counts positives only: the processed data keeps no timestamp for lower ratings.
Vectors are trained and kept exactly as ``bench_ensemble.py`` does (same ``--out`` files, so its
recipe runs are reused); ``--model NAME=OVERRIDE[,OVERRIDE...]`` names each configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import torch
from bench_ensemble import kept_vectors

SPLITS = ("val", "test")
TOP_K = 50


class AvailableMoviesScorer:
    """Another scorer's scores with every movie first loved after the user's held-out moment at -inf."""

    def __init__(self, scorer, first_positive: np.ndarray, moment: np.ndarray):
        self.scorer = scorer
        self.first_positive = torch.from_numpy(first_positive)  # per movie
        self.moment = torch.from_numpy(moment)  # per user index: the held-out movie's timestamp

    @property
    def n_items(self) -> int:
        return self.scorer.n_items

    def score(self, users: torch.Tensor) -> torch.Tensor:
        not_yet = self.first_positive.unsqueeze(0) > self.moment[users].unsqueeze(1)
        return self.scorer.score(users).masked_fill_(not_yet, -torch.inf)


def first_positive_times(dataset) -> np.ndarray:
    """Per movie index: the timestamp of its first positive by anyone, in any split."""
    frames = [dataset.split(split).select("item_idx", "timestamp") for split in ("train", *SPLITS)]
    first = pl.concat(frames).group_by("item_idx").agg(pl.col("timestamp").min())
    times = np.full(dataset.n_items, np.iinfo(np.int64).max, dtype=np.int64)
    times[first.get_column("item_idx").to_numpy()] = first.get_column("timestamp").to_numpy()
    return times


def held_out_moments(dataset, split: str) -> np.ndarray:
    """Per user index: the timestamp of their held-out movie in ``split``."""
    held_out = dataset.split(split)
    moments = np.full(dataset.n_users, np.iinfo(np.int64).max, dtype=np.int64)
    moments[held_out.get_column("user_idx").to_numpy()] = held_out.get_column("timestamp").to_numpy()
    return moments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, required=True)
    parser.add_argument("--data", default="ml-latest-small")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--model", action="append", default=None, metavar="NAME=OVERRIDE[,OVERRIDE]")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ensemble"))
    parser.add_argument("--read-test", action="store_true", help="the test split too")
    args = parser.parse_args()
    args.out, args.zip = args.out.resolve(), args.zip.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    specs = [
        spec.partition("=")
        for spec in args.model or ["sequence=experiment=sequence", "id=model.user_tower=id"]
    ]
    if malformed := [name for name, equals, overrides in specs if not (equals and overrides)]:
        parser.error(f"--model {malformed[0]!r}: expected NAME=OVERRIDE[,OVERRIDE...]")
    models = {name: overrides.split(",") for name, _, overrides in specs}

    from seed_average import seed_averaged_difference

    from two_tower_recsys.evaluation.bootstrap import BootstrapSettings
    from two_tower_recsys.evaluation.evaluator import evaluate
    from two_tower_recsys.pipelines.evaluation_suite import evaluation_tasks
    from two_tower_recsys.pipelines.hydra_edge import compose_settings
    from two_tower_recsys.preprocessing.prepare import prepare_dataset
    from two_tower_recsys.retrieval.scorers import EmbeddingScorer

    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        settings = compose_settings(
            [f"data={args.data}", f"paths.raw_zip={args.zip}", "logging.enabled=false"]
        )
        dataset = prepare_dataset(settings.data, settings.paths, progress=False)
    tasks = evaluation_tasks(dataset)
    first_positive = first_positive_times(dataset)
    eval_settings = settings.eval
    bootstrap = BootstrapSettings(
        eval_settings.bootstrap_resamples, eval_settings.bootstrap_seed, eval_settings.confidence
    )
    names = ["recall@50", "ndcg@10"]
    for model, overrides in models.items():
        by_split: dict[str, tuple[list, list]] = {}
        for seed in (int(seed) for seed in args.seeds.split(",")):
            vectors = kept_vectors(args, seed, overrides)
            for split in SPLITS if args.read_test else ("val",):
                task, moments = tasks[split], held_out_moments(dataset, split)
                scorer = EmbeddingScorer(
                    torch.from_numpy(vectors[f"users_{split}"]), torch.from_numpy(vectors["items"])
                )
                ks = {"recall_ks": (50,), "ndcg_ks": (10,), "batch_size": eval_settings.batch_size}
                result = evaluate(scorer, task, **ks, progress=False, top_k=TOP_K)
                available = evaluate(
                    AvailableMoviesScorer(scorer, first_positive, moments), task, **ks, progress=False
                )
                top = result.top_items  # -1: no unseen movie left (counted as available)
                not_yet = (top >= 0) & (first_positive[top] > moments[task.users][:, None])
                before, after = result.metrics, available.metrics
                print(
                    json.dumps(
                        {
                            "model": model,
                            "seed": seed,
                            "split": split,
                            f"top{TOP_K}_not_yet_loved_share": round(float(not_yet.mean()), 4),
                            "users_with_one": round(float(not_yet.any(axis=1).mean()), 4),
                            "catalogue": {name: round(before[name], 4) for name in names},
                            "available_only": {name: round(after[name], 4) for name in names},
                        }
                    ),
                    flush=True,
                )
                pair = by_split.setdefault(split, ([], []))
                pair[0].append(available.ranks)
                pair[1].append(result.ranks)
        for split, (available_ranks, catalogue_ranks) in by_split.items():
            difference = seed_averaged_difference(available_ranks, catalogue_ranks, names, bootstrap)
            print(
                json.dumps(
                    {
                        "model": model,
                        "split": split,
                        "seeds": args.seeds,
                        "available_only - catalogue": {
                            name: [round(d.diff, 4), *(round(b, 4) for b in d.interval)]
                            for name, d in difference.items()
                        },
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
