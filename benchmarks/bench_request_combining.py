"""Benchmark the pyfunc model's request combining in process: threads calling ``predict`` at once.

    .venv/bin/python benchmarks/bench_request_combining.py [--threads 1 6] [--requests 4000]

Packages the random ML-20M-sized index of bench_inference.py (written if missing) and loads it
with ``mlflow.pyfunc.load_model``, as the scoring server does. For each thread count, alternately
``--rounds`` times: ``--requests`` one-user requests (k = ``--k``) sent by that many threads,
with the model as packaged (concurrent requests combined) and with its combiner replaced by a
pass-through (each request alone). 6 threads is the scoring server's pool on 2 cores. Reported
per setting: the medians of requests/s and CPU time per request (this process: user + system),
and the mean number of requests per combined call. Printed and written to
``benchmarks/results/bench_request_combining.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import RESULTS, add_index_arguments, ensure_index, machine

from two_tower_recsys.inference.packaging import package_model
from two_tower_recsys.settings import InferConfig


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_index_arguments(parser)
    parser.add_argument("--package", type=Path, default=RESULTS / "mlflow_model-combining")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 6])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


class EachAlone:
    """The combiner's interface, answering each request on its own."""

    def __init__(self, answer_all):
        self._answer_all = answer_all

    def __call__(self, request):
        return self._answer_all([request])[0]


def measure(model, requests: list[pd.DataFrame], threads: int) -> dict[str, float]:
    combiner = model.unwrap_python_model().combiner
    calls, batches = getattr(combiner, "calls", 0), getattr(combiner, "batches", 0)
    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(model.predict, requests))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    combined_calls = getattr(combiner, "batches", 0) - batches
    return {
        "requests_per_s": len(requests) / wall,
        "cpu_ms_per_request": cpu / len(requests) * 1e3,
        "requests_per_call": (getattr(combiner, "calls", 0) - calls) / combined_calls
        if combined_calls
        else 1.0,
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)  # as `two-tower serve` runs each worker
    ensure_index(args)
    package_model(args.index, args.package, InferConfig())
    model = mlflow.pyfunc.load_model(str(args.package))
    python_model = model.unwrap_python_model()
    combiner, alone = python_model.combiner, EachAlone(python_model._recommend_all)
    user_ids = python_model.recommender.index.user_ids
    rng = np.random.default_rng(0)
    requests = [
        pd.DataFrame({"user_id": [int(user)], "k": [args.k]})
        for user in user_ids[rng.integers(0, len(user_ids), args.requests)]
    ]
    list(map(model.predict, requests[:200]))  # warm-up
    results = {}
    for threads in args.threads:
        rounds: dict[str, list[dict[str, float]]] = {"combined": [], "alone": []}
        for _ in range(args.rounds):
            for name, handler in (("combined", combiner), ("alone", alone)):
                python_model.combiner = handler
                rounds[name].append(measure(model, requests, threads))
        python_model.combiner = combiner
        results[f"{threads}_threads"] = {
            name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            for name, runs in rounds.items()
        }
        for name, summary in results[f"{threads}_threads"].items():
            print(
                f"{threads} thread(s), {name:8s}: {summary['requests_per_s']:6.0f} requests/s, "
                f"{summary['cpu_ms_per_request']:.3f} ms CPU per request, "
                f"{summary['requests_per_call']:.2f} requests per call",
                flush=True,
            )
    out = RESULTS / "bench_request_combining.json"
    out.write_text(
        json.dumps(
            {
                "args": vars(args) | {"index": str(args.index), "package": str(args.package)},
                "machine": machine(),
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
