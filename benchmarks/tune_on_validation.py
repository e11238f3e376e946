"""Choose hyperparameters on validation only: mean best validation Recall@50 over seeds.

    .venv/bin/python benchmarks/tune_on_validation.py --zip ../shared/data/ml-latest-small.zip \\
        --grid '[{"model.negatives": "in_batch"}, {"model.negatives": "full"}]' --seeds 5

Each grid point is a set of config overrides on top of the defaults; each seed trains with the
real pipeline code (fit_two_tower: Lightning, early stopping on validation Recall@50). The test
split is never read here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, required=True)
    parser.add_argument("--data", default="ml-latest-small", help="data config (its md5 is checked)")
    parser.add_argument("--grid", default="[{}]", help="JSON list of {override: value} dicts")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()

    from two_tower_recsys.pipelines.hydra_edge import compose_settings
    from two_tower_recsys.preprocessing.prepare import prepare_dataset
    from two_tower_recsys.training.fit import fit_two_tower
    from two_tower_recsys.utils.allocator import keep_freed_memory_for_reuse

    keep_freed_memory_for_reuse()
    with tempfile.TemporaryDirectory() as scratch:
        base = [f"data={args.data}", f"paths.raw_zip={args.zip}", f"paths.processed_dir={scratch}/processed"]
        base.append("trainer.progress_bar=false")
        dataset = prepare_dataset(compose_settings(base).data, compose_settings(base).paths, progress=False)
        for point in json.loads(args.grid):
            overrides = [f"{key}={value}" for key, value in point.items()]
            started = time.perf_counter()
            best, epochs = [], []
            for seed in range(args.seeds):
                settings = compose_settings([*base, *overrides, f"seed={seed}"])
                fit = fit_two_tower(
                    dataset,
                    model_cfg=settings.model,
                    trainer_cfg=settings.trainer,
                    eval_cfg=settings.eval,
                    seed=seed,
                    checkpoint_dir=Path(tempfile.mkdtemp(dir=scratch)),
                )
                monitor = f"recall@{settings.trainer.monitor_k}"
                best.append(max(record.metrics[monitor] for record in fit.history))
                epochs.append(fit.best_epoch)
            spread = statistics.stdev(best) if len(best) > 1 else 0.0
            print(
                f"{json.dumps(point)}  val recall@50 mean {statistics.mean(best):.4f} sd {spread:.4f}  "
                f"best epochs {epochs}  {time.perf_counter() - started:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
