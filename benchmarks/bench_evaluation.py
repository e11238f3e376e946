"""The evaluator at ML-20M scale: ranking every held-out movie among all movies for all users.

    .venv/bin/python benchmarks/bench_evaluation.py [--zip PATH] [--repeats 3]

Scorers: popularity (the baseline) and random 64-dim embeddings (the two-tower's cost: a
matrix product per user batch). Each repeat runs in a fresh process after the dataset is
preprocessed once; reported: wall time of evaluate() on the test split and peak RSS.
Target (issue #2): one scorer over 138k users x 27k movies in <= 30 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ensure_ml20m_shaped_zip, median_summary, peak_rss_mb, run_isolated


def prepare(zip_path: Path, processed_dir: Path):
    from two_tower_recsys.preprocessing.prepare import prepare_dataset
    from two_tower_recsys.settings import DataConfig, PathsConfig

    return prepare_dataset(
        DataConfig(name="custom"), PathsConfig(raw_zip=zip_path, processed_dir=processed_dir), progress=False
    )


def child(zip_path: Path, processed_dir: Path, scorer_name: str, batch_size: int) -> None:
    import torch

    from two_tower_recsys.evaluation.evaluator import evaluate, evaluation_task
    from two_tower_recsys.models.popularity import fit_popularity
    from two_tower_recsys.retrieval.scorers import EmbeddingScorer
    from two_tower_recsys.utils.allocator import keep_freed_memory_for_reuse

    keep_freed_memory_for_reuse()  # as every two-tower command does
    dataset = prepare(zip_path, processed_dir)
    task = evaluation_task(dataset, "test")
    if scorer_name == "popularity":
        scorer = fit_popularity(task.history, dataset.n_items)
    else:
        generator = torch.Generator().manual_seed(0)
        scorer = EmbeddingScorer(
            torch.randn(dataset.n_users, 64, generator=generator),
            torch.randn(dataset.n_items, 64, generator=generator),
        )
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    result = evaluate(scorer, task, batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "evaluate_s": seconds,
                "users": len(task.users),
                "items": dataset.n_items,
                "peak_rss_mb": peak_rss_mb(),
                "peak_rss_before_mb": rss_before,
                "recall@50": result.metrics["recall@50"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, default=None, help="default: the synthetic ML-20M-shaped zip")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--scorers", default="popularity,embeddings")
    parser.add_argument("--child", nargs=3, metavar=("PROCESSED", "SCORER", "ZIP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        processed, scorer, zip_path = args.child
        child(Path(zip_path), Path(processed), scorer, args.batch_size)
        return
    zip_path = args.zip or ensure_ml20m_shaped_zip()
    with tempfile.TemporaryDirectory() as processed_dir:
        prepare(zip_path, Path(processed_dir))
        for scorer in args.scorers.split(","):
            runs = []
            for repeat in range(args.repeats):
                run = run_isolated(
                    Path(__file__),
                    [processed_dir, scorer, str(zip_path), "--batch-size", str(args.batch_size)],
                )
                runs.append(run)
                print(f"{scorer} run {repeat + 1}: {json.dumps(run)}", flush=True)
            summary = median_summary(runs, ["evaluate_s", "peak_rss_mb"])
            seconds, rss = summary["evaluate_s"], summary["peak_rss_mb"]
            print(f"{scorer} median: evaluate_s={seconds:.1f} peak_rss_mb={rss:.0f}")


if __name__ == "__main__":
    main()
