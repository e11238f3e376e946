"""Quality on real data: the default model and each negatives option against popularity.

    .venv/bin/python benchmarks/bench_quality.py --zip ../shared/data/ml-latest-small.zip

Runs the real `two-tower train` pipeline (default config, no per-dataset tuning) once per
option, each in its own scratch directory, and prints validation and test Recall@10/50/100 and
NDCG@10/50. This is where the test split is read: hyperparameters were chosen beforehand on
validation (`two-tower tune`, docs/tuning.md).

    .venv/bin/python benchmarks/bench_quality.py --zip ../shared/data/ml-latest-small.zip \
        --options defaults --seeds 0,1,2,3,4

With several seeds it also prints, per option, the spread of test Recall@50 and of its ratio to
popularity, and the floors the quality test uses: mean - 3 sd, never above the lowest seed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

OPTIONS = {
    "defaults": [],  # in_batch negatives with logQ correction
    "in_batch_without_logq": ["model.logq_correction=false"],
    "full_softmax": ["model.negatives=full"],
}


@contextlib.contextmanager
def working_directory(path: Path):
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, required=True)
    parser.add_argument("--data", default="ml-latest-small")
    parser.add_argument("--options", default=",".join(OPTIONS), help="comma-separated names of OPTIONS")
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default: the config's seed)")
    args = parser.parse_args()

    from two_tower_recsys.pipelines import train_pipeline
    from two_tower_recsys.pipelines.hydra_edge import compose_settings

    zip_path = args.zip.resolve()
    seeds = [f"seed={seed}" for seed in args.seeds.split(",") if seed] or [None]
    for name in args.options.split(","):
        test_recalls, ratios = [], []
        for seed in seeds:
            with tempfile.TemporaryDirectory() as scratch, working_directory(Path(scratch)):
                overrides = [f"data={args.data}", f"paths.raw_zip={zip_path}", "logging.enabled=false"]
                overrides += [seed] if seed else []
                print(f"\n== {name} {seed or ''}", flush=True)
                started = time.perf_counter()
                train_pipeline.run(
                    compose_settings([*overrides, "trainer.progress_bar=false", *OPTIONS[name]])
                )
                manifest = json.loads(Path("artifacts/manifest.json").read_text())
                test = json.loads(Path("artifacts/metrics.json").read_text())["test"]
                test_recalls.append(test["two_tower"]["recall@50"])
                ratios.append(test_recalls[-1] / test["popularity"]["recall@50"])
                print(
                    f"(best epoch {manifest['best_epoch']}, {time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
        if len(seeds) > 1:
            print_floors(name, seeds, test_recalls, ratios)


def print_floors(name: str, seeds: list[str | None], recalls: list[float], ratios: list[float]) -> None:
    print(f"\n{name}: {', '.join(str(seed) for seed in seeds)}")
    for label, values in (("test recall@50", recalls), ("test recall@50 / popularity", ratios)):
        mean, sd = statistics.mean(values), statistics.stdev(values)
        floor = min(mean - 3 * sd, min(values))
        print(
            f"{label}: {', '.join(f'{v:.4f}' for v in values)}; mean {mean:.4f} sd {sd:.4f} "
            f"min {min(values):.4f} -> floor min(mean - 3 sd, min) = {floor:.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
