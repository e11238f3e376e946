"""Benchmark in-process ``Recommender.recommend`` latency on an ML-20M-sized index.

    .venv/bin/python benchmarks/bench_inference.py              # 138,493 users x 27,278 movies x 64
    .venv/bin/python benchmarks/bench_inference.py --users 2000 --movies 1500 --index /tmp/index

The index has random embeddings and ~70 seen movies per user (Zipf-like), written once to
``--index`` and reused (bench_serving.py packages the same one). Latency is wall time per call:
p50/p99 over ``--single-calls`` one-user calls and ``--batch-calls`` calls of ``--batch-users``
users, for each k. Results are printed and written to ``benchmarks/results/bench_inference.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from random_index import ML20M_MOVIES, ML20M_USERS, write_random_index

from two_tower_recsys.inference.recommender import Recommender
from two_tower_recsys.utils.fileio import MANIFEST_NAME

RESULTS = Path(__file__).resolve().parent / "results"


def add_index_arguments(parser: argparse.ArgumentParser) -> None:
    """The random index's location and shape, as :func:`ensure_index` reads them."""
    parser.add_argument("--index", type=Path, default=RESULTS / "index-20m")
    parser.add_argument("--users", type=int, default=ML20M_USERS)
    parser.add_argument("--movies", type=int, default=ML20M_MOVIES)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--mean-positives", type=float, default=70.0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_index_arguments(parser)
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--single-calls", type=int, default=2000)
    parser.add_argument("--batch-users", type=int, default=1000)
    parser.add_argument("--batch-calls", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_inference.json")
    return parser.parse_args()


def ensure_index(args: argparse.Namespace) -> float:
    """Write the random index unless a complete one is there; seconds spent writing."""
    if (args.index / MANIFEST_NAME).exists():
        return 0.0
    started = time.perf_counter()
    write_random_index(
        args.index, n_users=args.users, n_items=args.movies, dim=args.dim, mean_positives=args.mean_positives
    )
    return time.perf_counter() - started


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99))}


def time_calls(recommender: Recommender, batches: list[np.ndarray], k: int) -> list[float]:
    recommender.recommend(batches[0], k)  # warm-up: first-call allocations are not latency
    timings = []
    for users in batches:
        started = time.perf_counter()
        recommender.recommend(users, k)
        timings.append(time.perf_counter() - started)
    return timings


def machine() -> dict[str, object]:
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def main() -> None:
    args = parse_args()
    write_s = ensure_index(args)
    started = time.perf_counter()
    recommender = Recommender.from_artifacts(args.index)
    load_s = time.perf_counter() - started
    index = recommender.index
    seen_per_user = np.diff(index.seen.indptr.numpy())
    rng = np.random.default_rng(0)
    user_ids = index.user_ids
    results = []
    for k in args.ks:
        singles = [rng.choice(user_ids, 1) for _ in range(args.single_calls)]
        batches = [rng.choice(user_ids, args.batch_users) for _ in range(args.batch_calls)]
        for label, calls in (("1 user", singles), (f"{args.batch_users} users", batches)):
            stats = percentiles_ms(time_calls(recommender, calls, k))
            results.append({"k": k, "users_per_call": len(calls[0]), "calls": len(calls), **stats})
            print(f"k={k:<4} {label:>11}: p50 {stats['p50_ms']:8.2f} ms   p99 {stats['p99_ms']:8.2f} ms")
    report = {
        "index": {
            "users": len(user_ids),
            "movies": index.n_items,
            "dim": int(index.item_embeddings.shape[1]),
            "seen_per_user_mean": float(seen_per_user.mean()),
            "seen_pairs": int(seen_per_user.sum()),
        },
        "index_write_s": write_s,
        "load_s": load_s,
        "machine": machine(),
        "latency": results,
    }
    print(
        f"index {len(user_ids):,} users x {index.n_items:,} movies x {report['index']['dim']}, "
        f"{report['index']['seen_per_user_mean']:.1f} seen per user; load {load_s:.2f} s; "
        f"{report['machine']['cpu_count']} CPUs, torch threads {report['machine']['torch_threads']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
