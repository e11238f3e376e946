"""Quality on real data: the default model and each negatives option against popularity.

    .venv/bin/python benchmarks/bench_quality.py --zip ../shared/data/ml-latest-small.zip

Runs the real `two-tower train` pipeline (default config, no per-dataset tuning) once per
option, each in its own scratch directory, and prints validation and test Recall@10/50/100 and
NDCG@10/50. This is where the test split is read: hyperparameters were chosen beforehand with
tune_on_validation.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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
    args = parser.parse_args()

    from two_tower_recsys.pipelines import train_pipeline
    from two_tower_recsys.pipelines.hydra_edge import compose_settings

    zip_path = args.zip.resolve()
    for name in args.options.split(","):
        with tempfile.TemporaryDirectory() as scratch, working_directory(Path(scratch)):
            overrides = [f"data={args.data}", f"paths.raw_zip={zip_path}", "logging.enabled=false"]
            print(f"\n== {name}", flush=True)
            started = time.perf_counter()
            train_pipeline.run(compose_settings([*overrides, "trainer.progress_bar=false", *OPTIONS[name]]))
            manifest = json.loads(Path("artifacts/manifest.json").read_text())
            print(f"(best epoch {manifest['best_epoch']}, {time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
