"""Top-k over an ML-20M-sized catalogue: the project's top_k against one plain ``torch.topk``.

Usage: python benchmarks/bench_topk.py [--items 27278] [--repeats 50] [--threads 1]

Medians over ``--repeats`` calls on fresh Gaussian scores (ties are rare there, so this is the
cost of selection, not of the tie rule). The plain ``torch.topk`` line is the floor that the
two-stage selection for batches has to beat to earn its branches.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from two_tower_recsys.retrieval.topk import top_k


def median_ms(function, scores: torch.Tensor, k: int, repeats: int) -> float:
    function(scores, k)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(scores, k)
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def plain_topk(scores: torch.Tensor, k: int):
    return torch.topk(scores, k, dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=27_278)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8, 150, 1024])
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 50, 100, 500])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    print(f"{'rows':>6} {'k':>5} {'top_k ms':>10} {'torch.topk ms':>14} {'ratio':>6}")
    for rows in args.rows:
        scores = torch.randn(rows, args.items, generator=generator)
        for k in args.ks:
            ours = median_ms(top_k, scores, k, args.repeats)
            plain = median_ms(plain_topk, scores, k, args.repeats)
            print(f"{rows:>6} {k:>5} {ours:>10.3f} {plain:>14.3f} {plain / ours:>6.2f}")


if __name__ == "__main__":
    main()
