"""An ensemble of sequence towers against one: each member trained alone (its own seed), their
vectors concatenated, so the ensemble's score is the sum of the members' scores: still one dot
product, as wide as the members together.

    .venv/bin/python benchmarks/bench_ensemble.py --zip ../shared/data/ml-latest-small.zip \\
        --seeds 0,1,2,3,4,5,6,7,8 --members 3 [--out benchmarks/results/ensemble] \\
        [--override experiment=sequence ...] [--read-test]

Per seed, the configuration (``experiment=sequence`` unless ``--override`` replaces it) is trained
by the real ``two-tower train`` in a scratch directory and each split's user vectors (the tower
reading only what precedes the split) and the movie vectors are kept in ``--out`` (reused when
present, so seeds can be trained by separate invocations side by side). Seeds are then taken
``--members`` at a time in the order given (0,1,2 / 3,4,5 / ...): ensemble i against the single
model of the i-th seed, both scored by the one evaluator, with the seed-averaged paired difference
over users. Validation only, unless ``--read-test``: read the test split once, at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from bench_tower_comparison import configuration_digest

SPLITS = ("val", "test")


def train_and_embed(overrides: list[str], scratch: Path) -> dict[str, np.ndarray]:
    """Train in ``scratch``; every user's vector per split and the movie vectors (temperature 1)."""
    from two_tower_recsys.pipelines import train_pipeline
    from two_tower_recsys.pipelines.hydra_edge import compose_settings
    from two_tower_recsys.pipelines.trained_scorers import load_checkpoint_module, split_scorers
    from two_tower_recsys.preprocessing.prepare import prepare_dataset

    with contextlib.chdir(scratch):  # back afterwards: the scratch directory is then removed
        settings = compose_settings(overrides)
        train_pipeline.run(settings)
        dataset = prepare_dataset(settings.data, settings.paths, progress=False)
        module = load_checkpoint_module(settings.paths.artifacts_dir)
        scorers = split_scorers(module, dataset)
        users = torch.arange(dataset.n_users)
        # Folding 1 / temperature into the user side keeps each member's scores as trained.
        arrays = {
            f"users_{split}": (scorer.user_vectors(users) / scorer.temperature).numpy()
            for split, scorer in scorers.items()
        }
        arrays["items"] = scorers["val"].item_embeddings_t.T.numpy()
        manifest = json.loads((settings.paths.artifacts_dir / "manifest.json").read_text())
    return arrays | {"best_epoch": np.array(manifest["best_epoch"])}


def ranks_of(members: list[dict[str, np.ndarray]], tasks, eval_settings) -> dict[str, np.ndarray]:
    """Per split: each user's rank under the summed scores of ``members``."""
    from two_tower_recsys.pipelines.evaluation_suite import evaluate_split
    from two_tower_recsys.retrieval.scorers import EmbeddingScorer

    items = torch.from_numpy(np.concatenate([member["items"] for member in members], axis=1))
    ranks = {}
    for split, task in tasks.items():
        users = np.concatenate([member[f"users_{split}"] for member in members], axis=1)
        scorer = EmbeddingScorer(torch.from_numpy(users), items)
        ranks[split] = evaluate_split(scorer, task, eval_settings, progress=False, label="ensemble").ranks
    return ranks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, required=True)
    parser.add_argument("--data", default="ml-latest-small")
    parser.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--override", action="append", default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ensemble"))
    parser.add_argument("--train-only", action="store_true", help="train and keep the seeds, score nothing")
    parser.add_argument(
        "--read-test", action="store_true", help="score the test split too (once, at the end)"
    )
    args = parser.parse_args()
    args.out, args.zip = args.out.resolve(), args.zip.resolve()  # before any chdir
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    overrides = args.override or ["experiment=sequence"]
    seeds = [int(seed) for seed in args.seeds.split(",")]

    members = {seed: kept_vectors(args, seed, overrides) for seed in seeds}
    if args.train_only:
        return
    report(args, seeds, members, overrides)


def kept_vectors(args, seed: int, overrides: list[str]) -> dict[str, np.ndarray]:
    """One seed's vectors from ``args.out``, trained (with ``args.data`` from ``args.zip``) and
    kept there first when missing."""
    common = [f"data={args.data}", f"paths.raw_zip={args.zip.resolve()}", "logging.enabled=false"]
    run = [*common, "trainer.progress_bar=false", f"seed={seed}", *overrides]
    kept = args.out / f"vectors_{configuration_digest(run)}_seed{seed}.npz"
    if not kept.exists():
        with tempfile.TemporaryDirectory() as scratch:
            arrays = train_and_embed(run, Path(scratch))
        partial = kept.with_suffix(".partial.npz")
        np.savez(partial, **arrays)
        partial.rename(kept)
    vectors = dict(np.load(kept))
    print(json.dumps({"seed": seed, "kept": kept.name, "best_epoch": int(vectors["best_epoch"])}), flush=True)
    return vectors


def report(args, seeds: list[int], members: dict, overrides: list[str]) -> None:
    from seed_average import seed_averaged_difference

    from two_tower_recsys.evaluation.bootstrap import BootstrapSettings
    from two_tower_recsys.evaluation.metrics import summarize
    from two_tower_recsys.pipelines.evaluation_suite import evaluation_tasks
    from two_tower_recsys.pipelines.hydra_edge import compose_settings
    from two_tower_recsys.preprocessing.prepare import prepare_dataset

    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        settings = compose_settings(
            [f"data={args.data}", f"paths.raw_zip={args.zip.resolve()}", "logging.enabled=false", *overrides]
        )
        tasks = evaluation_tasks(prepare_dataset(settings.data, settings.paths, progress=False))
    splits = SPLITS if args.read_test else ("val",)
    tasks = {split: tasks[split] for split in splits}
    eval_settings = settings.eval
    groups = [seeds[start : start + args.members] for start in range(0, len(seeds), args.members)]
    groups = [group for group in groups if len(group) == args.members]
    singles, ensembles = [], []
    for group in groups:
        single = ranks_of([members[group[0]]], tasks, eval_settings)
        ensemble = ranks_of([members[seed] for seed in group], tasks, eval_settings)
        singles.append(single)
        ensembles.append(ensemble)
        line = {"members": group}
        for split in splits:
            line[split] = {
                "single": round(summarize(single[split], [50], [])["recall@50"], 4),
                "ensemble": round(summarize(ensemble[split], [50], [])["recall@50"], 4),
            }
        print(json.dumps(line), flush=True)
    bootstrap = BootstrapSettings(
        eval_settings.bootstrap_resamples, eval_settings.bootstrap_seed, eval_settings.confidence
    )
    summary = {"groups": groups}
    for split in splits:
        differences = seed_averaged_difference(
            [ranks[split] for ranks in ensembles],
            [ranks[split] for ranks in singles],
            ["recall@50"],
            bootstrap,
        )
        difference = differences["recall@50"]
        summary[split] = {
            "single": round(statistics.mean(summarize(r[split], [50], [])["recall@50"] for r in singles), 4),
            "ensemble": round(
                statistics.mean(summarize(r[split], [50], [])["recall@50"] for r in ensembles), 4
            ),
            "ensemble-single": [round(difference.diff, 4), *(round(b, 4) for b in difference.interval)],
        }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
