"""Training variants of the sequence recipe that are not in the library, against the recipe, on
validation: overlapping training windows, a second pass from the first pass's weights, a cosine
learning-rate schedule.

    .venv/bin/python benchmarks/bench_training_variants.py --zip ../shared/data/ml-latest-small.zip \\
        --variant overlapping-windows|second-pass|cosine-lr --seeds 0,1,2 [--out benchmarks/results/variants]

A harness: it patches the library in its own process, trains each seed by the real ``two-tower
train`` and keeps the vectors as ``bench_ensemble.py`` does (the recipe's own runs are that
script's, in ``--recipe-out``, trained there when missing), then prints each seed's validation
Recall@50 and the seed-averaged paired difference variant - recipe.

- ``overlapping-windows``: a user's training windows start every ``max_history / 2`` targets
  from the newest end instead of every ``max_history`` (``training_windows``), so each target
  past the newest window is trained twice per pass, each time with another context.
- ``second-pass``: once the recipe has stopped, training starts again from its best weights (the
  moving average) with a fresh optimizer at a tenth of the learning rate, up to 15 more epochs,
  early stopping as before.
- ``cosine-lr``: the learning rate decays from the recipe's along a half cosine to 0 at the last
  of ``trainer.max_epochs`` epochs, step by step (early stopping as before).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from bench_ensemble import ranks_of, train_and_embed
from bench_tower_comparison import configuration_digest

RECIPE = ["experiment=sequence"]
SECOND_PASS = ["trainer.lr=0.0005", "trainer.max_epochs=15"]  # the recipe's lr is 0.005
_START_FROM = "BENCH_SECOND_PASS_FROM"


def overlapping_windows(positives, n_users: int, max_inputs: int):
    """``training_windows`` with a window starting every ``max_inputs // 2`` targets."""
    from two_tower_recsys.preprocessing.histories import _in_split_order, window_rows

    stride = max(1, max_inputs // 2)
    users, items = _in_split_order(positives)
    counts = np.bincount(users, minlength=n_users)
    first_row = np.cumsum(counts) - counts
    beyond_newest = np.maximum(counts - 1 - max_inputs, 0)
    n_windows = np.where(counts >= 2, 1 + -(-beyond_newest // stride), 0)
    window_user = np.repeat(np.arange(n_users), n_windows)
    newest_first = np.arange(len(window_user)) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
    last_target = counts[window_user] - 1 - newest_first * stride
    first_target = np.maximum(1, last_target - max_inputs + 1)
    return window_rows(items, first_row[window_user], first_target, last_target, max_inputs)


def patch_overlapping_windows() -> None:
    import two_tower_recsys.training.sequences as sequences

    sequences.training_windows = overlapping_windows


def patch_second_pass_start() -> None:
    """New modules start from the checkpoint named by the environment variable, when set."""
    from two_tower_recsys.training.checkpoint import load_two_tower_checkpoint
    from two_tower_recsys.training.module import TwoTowerModule

    build = TwoTowerModule.from_settings.__func__

    def from_settings(cls, *args, **kwargs):
        module = build(cls, *args, **kwargs)
        if start := os.environ.get(_START_FROM):
            module.load_state_dict(load_two_tower_checkpoint(Path(start)).state_dict())
        return module

    TwoTowerModule.from_settings = classmethod(from_settings)


def patch_cosine_lr() -> None:
    from two_tower_recsys.training.module import TwoTowerModule

    build = TwoTowerModule.configure_optimizers

    def configure_optimizers(self):
        optimizer = build(self)
        steps = self.trainer.estimated_stepping_batches
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, int(steps)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    TwoTowerModule.configure_optimizers = configure_optimizers


def second_pass(run: list[str]) -> dict[str, np.ndarray]:
    from two_tower_recsys.pipelines import train_pipeline
    from two_tower_recsys.pipelines.hydra_edge import compose_settings

    with tempfile.TemporaryDirectory() as first:
        with contextlib.chdir(first):
            os.environ.pop(_START_FROM, None)
            train_pipeline.run(compose_settings(run))
        os.environ[_START_FROM] = str(Path(first) / "artifacts" / "model.ckpt")
        try:
            with tempfile.TemporaryDirectory() as scratch:
                return train_and_embed([*run, *SECOND_PASS], Path(scratch))
        finally:
            os.environ.pop(_START_FROM)


def kept_vectors(path: Path, train) -> dict[str, np.ndarray]:
    if not path.exists():
        arrays = train()
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, **arrays)
        partial.rename(path)
    return dict(np.load(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, required=True)
    parser.add_argument(
        "--variant", choices=["overlapping-windows", "second-pass", "cosine-lr"], required=True
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/variants"))
    parser.add_argument("--recipe-out", type=Path, default=Path("benchmarks/results/ensemble"))
    args = parser.parse_args()
    args.zip, args.out, args.recipe_out = args.zip.resolve(), args.out.resolve(), args.recipe_out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    args.recipe_out.mkdir(parents=True, exist_ok=True)

    from seed_average import seed_averaged_difference

    from two_tower_recsys.evaluation.bootstrap import BootstrapSettings
    from two_tower_recsys.pipelines.evaluation_suite import evaluation_tasks
    from two_tower_recsys.pipelines.hydra_edge import compose_settings
    from two_tower_recsys.preprocessing.prepare import prepare_dataset

    common = ["data=ml-latest-small", f"paths.raw_zip={args.zip}", "logging.enabled=false"]
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        settings = compose_settings([*common, *RECIPE])
        tasks = {
            "val": evaluation_tasks(prepare_dataset(settings.data, settings.paths, progress=False))["val"]
        }
    variant_ranks, recipe_ranks = [], []
    seeds = [int(seed) for seed in args.seeds.split(",")]
    runs = {seed: [*common, "trainer.progress_bar=false", f"seed={seed}", *RECIPE] for seed in seeds}
    digests = {seed: configuration_digest(run) for seed, run in runs.items()}
    # The recipe's runs first, unpatched (their files are shared with bench_ensemble.py).
    recipes = {
        seed: kept_vectors(
            args.recipe_out / f"vectors_{digests[seed]}_seed{seed}.npz",
            lambda run=run: _trained_in_scratch(run),
        )
        for seed, run in runs.items()
    }
    {
        "overlapping-windows": patch_overlapping_windows,
        "cosine-lr": patch_cosine_lr,
        "second-pass": patch_second_pass_start,
    }[args.variant]()
    train = second_pass if args.variant == "second-pass" else _trained_in_scratch
    for seed, run in runs.items():
        variant = kept_vectors(
            args.out / f"vectors_{args.variant}_{digests[seed]}_seed{seed}.npz", lambda run=run: train(run)
        )
        variant_ranks.append(ranks_of([variant], tasks, settings.eval)["val"])
        recipe_ranks.append(ranks_of([recipes[seed]], tasks, settings.eval)["val"])
        line = {"seed": seed, "best_epoch": int(variant["best_epoch"])}
        line |= {"variant": _recall(variant_ranks[-1]), "recipe": _recall(recipe_ranks[-1])}
        print(json.dumps(line), flush=True)
    bootstrap = BootstrapSettings(
        settings.eval.bootstrap_resamples, settings.eval.bootstrap_seed, settings.eval.confidence
    )
    difference = seed_averaged_difference(variant_ranks, recipe_ranks, ["recall@50"], bootstrap)["recall@50"]
    summary = {
        "variant": args.variant,
        "validation_recall@50": [
            round(statistics.mean(map(_recall, ranks)), 4) for ranks in (variant_ranks, recipe_ranks)
        ],
        "variant-recipe": [round(difference.diff, 4), *(round(bound, 4) for bound in difference.interval)],
    }
    print(json.dumps(summary), flush=True)


def _trained_in_scratch(run: list[str]) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as scratch:
        return train_and_embed(run, Path(scratch))


def _recall(ranks: np.ndarray) -> float:
    from two_tower_recsys.evaluation.metrics import summarize

    return round(summarize(ranks, [50], [])["recall@50"], 4)


if __name__ == "__main__":
    main()
