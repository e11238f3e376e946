"""Quality of the ID and the sequence user towers: val and test metrics per seed, and the mean.

    .venv/bin/python benchmarks/bench_sequence_quality.py --zip ../shared/data/ml-latest-small.zip \\
        --tower sequence --seeds 0,1,2

Each seed runs the real `two-tower train` pipeline in its own scratch directory and prints one
JSON line with its validation and test Recall@10/50/100 and NDCG@10/50; the last line is the mean
over seeds. The test split is read here only, once the configuration was chosen on validation
with tune_on_validation.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

TOWERS = {
    "id": [],  # the defaults
    # The recipe: AdamW with weight decay, full softmax at every position.
    "sequence": ["experiment=sequence"],  # configs/experiment/sequence.yaml: the recipe
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, required=True)
    parser.add_argument("--data", default="ml-latest-small")
    parser.add_argument("--tower", choices=TOWERS, default="sequence")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--override", action="append", default=[], help="extra config override")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from two_tower_recsys.pipelines import train_pipeline
    from two_tower_recsys.pipelines.hydra_edge import compose_settings

    zip_path = args.zip.resolve()
    runs = []
    for seed in (int(seed) for seed in args.seeds.split(",")):
        with tempfile.TemporaryDirectory() as scratch:
            os.chdir(scratch)
            overrides = [f"data={args.data}", f"paths.raw_zip={zip_path}", "logging.enabled=false"]
            overrides += ["trainer.progress_bar=false", f"seed={seed}", *TOWERS[args.tower], *args.override]
            started = time.perf_counter()
            train_pipeline.run(compose_settings(overrides))
            report = json.loads(Path("artifacts/metrics.json").read_text())
            manifest = json.loads(Path("artifacts/manifest.json").read_text())
            run = {split: report[split]["two_tower"] for split in ("val", "test")} | {
                "seed": seed,
                "best_epoch": manifest["best_epoch"],
                "seconds": time.perf_counter() - started,
            }
            runs.append(run)
            print(json.dumps({"tower": args.tower, **run}), flush=True)
    mean = {
        split: {name: statistics.mean(run[split][name] for run in runs) for name in runs[0][split]}
        for split in ("val", "test")
    }
    print(
        json.dumps({"tower": args.tower, "mean_over_seeds": [run["seed"] for run in runs], **mean}),
        flush=True,
    )


if __name__ == "__main__":
    main()
