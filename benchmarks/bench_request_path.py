"""What one exact answer costs in process, with a warm and with a cold cache (ML-20M shape).

    .venv/bin/python benchmarks/bench_request_path.py
    .venv/bin/python benchmarks/bench_request_path.py --calls 3000 --evict-mb 16

In the server, the HTTP stack, MLflow and the client run between two requests and push the 7 MB
movie matrix (27,278 x 64 float32) out of the cache. This measures, one torch thread, random
embeddings, medians over ``--calls`` calls:

- the product of one user with the matrix,
  back to back ("warm") and after reading ``--evict-mb`` MB of other data before each call
  ("cold"), and cold on two torch threads;
- cheaper-looking ways to scan the catalogue, cold: bfloat16 and float16 torch products, and
  faiss flat scans (float32, 8-bit and fp16 scalar quantisers) for the top 64;
- the top-10 of one row of 27,278 scores: ``retrieval.topk.top_k`` (row by row in NumPy) against
  ``torch.topk`` (and its tie check), warm.

Printed and written to ``benchmarks/results/bench_request_path.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from bench_inference import RESULTS, machine

from two_tower_recsys.retrieval.topk import top_k

N_USERS, N_MOVIES, DIM = 138_493, 27_278, 64


def median_us(call: Callable[[int], object], calls: int, before: Callable[[], object] | None = None) -> float:
    times = []
    for i in range(calls):
        if before is not None:
            before()
        started = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--evict-mb", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    movies = torch.randn(DIM, N_MOVIES, generator=generator)
    users = torch.randn(N_USERS, DIM, generator=generator)
    other_data = np.ones(args.evict_mb << 20, dtype=np.uint8)

    def evict() -> None:
        other_data.sum()

    def user(i: int) -> torch.Tensor:
        row = (i * 7919) % N_USERS
        return users[row : row + 1]

    movies_bf16, movies_fp16 = movies.bfloat16(), movies.half()
    results: dict[str, float] = {
        "product, warm": median_us(lambda i: user(i) @ movies, args.calls),
        "product, cold": median_us(lambda i: user(i) @ movies, args.calls, evict),
        "bfloat16 product, cold": median_us(lambda i: user(i).bfloat16() @ movies_bf16, args.calls, evict),
        "float16 product, cold": median_us(lambda i: user(i).half() @ movies_fp16, args.calls, evict),
    }
    torch.set_num_threads(2)
    results["product on 2 torch threads, cold"] = median_us(lambda i: user(i) @ movies, args.calls, evict)
    torch.set_num_threads(1)
    try:
        import faiss

        faiss.omp_set_num_threads(1)
        rows = np.ascontiguousarray(movies.T.numpy())
        quantisers = {"8-bit": faiss.ScalarQuantizer.QT_8bit, "fp16": faiss.ScalarQuantizer.QT_fp16}
        indexes = {"float32": faiss.IndexFlatIP(DIM)}
        for name, kind in quantisers.items():
            indexes[name] = faiss.IndexScalarQuantizer(DIM, kind, faiss.METRIC_INNER_PRODUCT)
            indexes[name].train(rows)
        for name, index in indexes.items():
            index.add(rows)
            results[f"faiss {name} scan, top 64, cold"] = median_us(
                lambda i, index=index: index.search(user(i)[:1].numpy(), 64), args.calls, evict
            )
    except ImportError:
        print("faiss is not installed: its scans are skipped")
    scores = [user(i)[:1] @ movies for i in range(200)]
    results["top_k, 1 row, k = 10, warm"] = median_us(lambda i: top_k(scores[i % 200], 10), args.calls)
    results["torch.topk of 11, 1 row, warm"] = median_us(
        lambda i: torch.topk(scores[i % 200], 11), args.calls
    )
    width = max(len(name) for name in results)
    for name, value in results.items():
        print(f"{name:<{width}}  {value:8.1f} us")
    RESULTS.mkdir(exist_ok=True)
    report = {"calls": args.calls, "evict_mb": args.evict_mb, "median_us": results, "machine": machine()}
    (RESULTS / "bench_request_path.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
