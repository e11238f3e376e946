"""Judge on validation, with the test split never read, a change whose point is the newest train
positive, such as a refit on train + validation: a variant against a base configuration, both
trained on a split that holds each user's test movie back entirely.

    .venv/bin/python benchmarks/bench_held_back_test.py --zip ../shared/data/ml-latest-small.zip \\
        --seeds 0,1,2 --variant-override trainer.refit=true [--base-override ...] \\
        [--out benchmarks/results/held_back]

The split is patched in this process: each user's newest positive (the real test movie) is
dropped, the next newest becomes the split's "test" movie (so it is the real validation movie)
and the one before it the split's "validation" movie, so the base's validation split is a
stand-in for validation that the variant may train on, as a refit trains on the real one. Base:
``experiment=sequence`` and ``--base-override``s; variant: the base and ``--variant-override``s.
Each is trained by the real ``two-tower train`` and rescored by the one evaluator
(``bench_tower_comparison.train_and_rank``). One JSON line per seed with both models' Recall@50
on the stand-in test (real validation) and their best epochs, then the seed-averaged paired
difference variant - base of every metric with its interval (users resampled, not seeds). Ranks
are kept in ``--out`` per configuration and seed and reused, so variants share their base's runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
from bench_tower_comparison import configuration_digest, train_and_rank
from seed_average import seed_averaged_difference

RECIPE = ["experiment=sequence"]
MODELS = ("base", "variant")


def held_back_split_codes(user_codes_in_order: np.ndarray, n_users: int) -> np.ndarray:
    """``split_codes`` one position older: the newest positive in no split, the next newest test,
    the one before it validation (for users with enough positives to hold three out)."""
    from two_tower_recsys.preprocessing import split

    per_user = np.bincount(user_codes_in_order, minlength=n_users)
    last_row_of_user = np.cumsum(per_user) - 1
    newest_first_rank = last_row_of_user[user_codes_in_order] - np.arange(len(user_codes_in_order))
    held_out = per_user[user_codes_in_order] >= split.MIN_POSITIVES_TO_HOLD_OUT + 1
    codes = np.zeros(len(user_codes_in_order), dtype=np.int8)
    codes[held_out & (newest_first_rank == 2)] = split._SPLIT_CODES[split.VAL]
    codes[held_out & (newest_first_rank == 1)] = split._SPLIT_CODES[split.TEST]
    codes[held_out & (newest_first_rank == 0)] = max(split._SPLIT_CODES.values()) + 1  # dropped
    return codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, required=True)
    parser.add_argument("--data", default="ml-latest-small")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--base-override", action="append", default=[])
    parser.add_argument("--variant-override", action="append", default=[])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/held_back"))
    args = parser.parse_args()
    if not args.variant_override:
        parser.error("--variant-override: give at least one (else the variant is the base)")
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")

    from two_tower_recsys.evaluation.bootstrap import BootstrapSettings
    from two_tower_recsys.evaluation.metrics import summarize
    from two_tower_recsys.pipelines.hydra_edge import compose_settings
    from two_tower_recsys.preprocessing import split

    split.split_codes = held_back_split_codes  # read by split.temporal_split in this process only
    overrides = {"base": [*RECIPE, *args.base_override]}
    overrides["variant"] = [*overrides["base"], *args.variant_override]
    eval_settings = compose_settings([]).eval
    by_seed: dict[str, list[np.ndarray]] = {model: [] for model in MODELS}
    for seed in (int(seed) for seed in args.seeds.split(",")):
        common = [f"data={args.data}", f"paths.raw_zip={args.zip.resolve()}", "logging.enabled=false"]
        common += ["trainer.progress_bar=false", f"seed={seed}"]
        line: dict = {"seed": seed}
        for model in MODELS:
            digest = configuration_digest([*common, *overrides[model]])
            kept = args.out / f"held_back_{digest}_seed{seed}.npz"
            if not kept.exists():
                with tempfile.TemporaryDirectory() as scratch:
                    ranks, _, run = train_and_rank([*common, *overrides[model]], Path(scratch))
                np.savez(kept, ranks=ranks["test"], run=json.dumps(run))
            stored = np.load(kept)
            by_seed[model].append(stored["ranks"])
            metrics = summarize(stored["ranks"], eval_settings.recall_ks, eval_settings.ndcg_ks)
            line[model] = {"recall@50": round(metrics["recall@50"], 4), **json.loads(str(stored["run"]))}
        print(json.dumps(line), flush=True)
    names = list(summarize(by_seed["base"][0], eval_settings.recall_ks, eval_settings.ndcg_ks))
    settings = BootstrapSettings(
        eval_settings.bootstrap_resamples, eval_settings.bootstrap_seed, eval_settings.confidence
    )
    paired = seed_averaged_difference(by_seed["variant"], by_seed["base"], names, settings)
    summary = {
        "seeds": args.seeds,
        "users": len(by_seed["base"][0]),
        "variant-base": {
            name: [round(d.diff, 4), *(round(b, 4) for b in d.interval)] for name, d in paired.items()
        },
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
