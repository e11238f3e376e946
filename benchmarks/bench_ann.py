"""Benchmark the HNSW index against exact scoring: build time, memory, latency, recall.

    .venv/bin/python benchmarks/bench_ann.py                          # ML-20M-sized and 1M catalogues
    .venv/bin/python benchmarks/bench_ann.py --catalogues 27278 --kinds clustered --ef-search 128 512

Catalogues of ``--catalogues`` movies x 64, each in two kinds:

- ``random``: Gaussian embeddings (as ``random_index.py`` writes; a hard case for HNSW: no
  structure, every direction alike);
- ``clustered``: 64 taste clusters with spread, norms varying by a log-normal factor, closer to
  what training produces.

For each, in a fresh interpreter (its own peak RSS): the graphs are built with the shipped code
(``retrieval/ann.py``) and default parameters on ``--threads`` threads; then for ``--queries``
users, one at a time on one thread, the p50/p99 latency of the graph search and of the exact
path (one matrix-vector product and ``torch.topk``, as the recommender does), and the recall of
the ANN top-10/top-100 against the exact one (candidates merged by exact score, as the
recommender does), for each ``--ef-search``. Results go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import RESULTS, peak_rss_mb, run_isolated

DIM = 64


def embeddings(kind: str, n_items: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "random":
        items = rng.standard_normal((n_items, DIM), dtype=np.float32) * 0.1
        return items, rng.standard_normal((n_queries, DIM), dtype=np.float32) * 0.1
    centres = rng.standard_normal((64, DIM), dtype=np.float32)

    def around(n: int) -> np.ndarray:
        return centres[rng.integers(0, 64, n)] + 0.5 * rng.standard_normal((n, DIM), dtype=np.float32)

    items = around(n_items) * 0.1 * rng.lognormal(0.0, 0.3, (n_items, 1)).astype(np.float32)
    return items, around(n_queries) * 0.1


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99))}


def child(args: argparse.Namespace) -> None:
    import torch

    from two_tower_recsys.retrieval.ann import HnswParams, HnswSearcher, build_hnsw, write_hnsw

    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    items, queries = embeddings(args.kind, args.n_items, args.queries)
    rss_before = peak_rss_mb()
    params = HnswParams()
    started = time.perf_counter()
    graph = build_hnsw(items, params)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as directory:
        write_hnsw(graph, Path(directory) / "graphs.npz")
        graph_mb = (Path(directory) / "graphs.npz").stat().st_size / 1e6
    items_t, queries_t = torch.from_numpy(items).T.contiguous(), torch.from_numpy(queries)
    k_max = max(args.ks)
    # One user at a time: both paths on one thread (extra threads only add overhead and noise).
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    exact, exact_times = [], []
    for query in queries_t:
        started = time.perf_counter()
        top = torch.topk(query.unsqueeze(0) @ items_t, k_max, dim=1).indices
        exact_times.append(time.perf_counter() - started)
        exact.append(top[0].numpy())
    exact = np.stack(exact)
    results = []
    for ef_search in args.ef_search:
        searcher = HnswSearcher(graph, ef_search)
        for k in args.ks:
            found, times = [], []
            for query in queries:
                started = time.perf_counter()
                candidates = searcher.search(query[None, :], k)[0]
                candidates = candidates[candidates >= 0]
                best = np.argpartition(-(items[candidates] @ query), k - 1)[:k]  # merged by exact score
                found.append(candidates[best])
                times.append(time.perf_counter() - started)
            recall = np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact[:, :k], strict=True)])
            results.append({"ef_search": ef_search, "k": k, "recall": float(recall), **percentiles_ms(times)})
    print(
        json.dumps(
            {
                "kind": args.kind,
                "n_items": args.n_items,
                "params": {"m": params.m, "ef_construction": params.ef_construction},
                "build_s": build_s,
                "graph_mb": graph_mb,
                "vectors_mb": items.nbytes / 1e6,
                "peak_rss_mb": peak_rss_mb(),
                "rss_before_build_mb": rss_before,
                "exact": percentiles_ms(exact_times),
                "hnsw": results,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="random", help=argparse.SUPPRESS)
    parser.add_argument("--n-items", type=int, default=27_278, help=argparse.SUPPRESS)
    parser.add_argument("--catalogues", type=int, nargs="+", default=[27_278, 1_000_000])
    parser.add_argument("--kinds", nargs="+", default=["random", "clustered"])
    parser.add_argument("--ef-search", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_ann.json")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    common = ["--ef-search", *map(str, args.ef_search), "--ks", *map(str, args.ks)]
    common += ["--queries", str(args.queries), "--threads", str(args.threads)]
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    reports = []
    for n_items in args.catalogues:
        for kind in args.kinds:
            report = run_isolated(Path(__file__), ["--kind", kind, "--n-items", str(n_items), *common])
            reports.append(report)
            out.write_text(json.dumps(reports, indent=2) + "\n")  # partial results survive a long run
            print(
                f"{kind:>9} {n_items:>9,} items: build {report['build_s']:.1f} s, "
                f"graph {report['graph_mb']:.0f} MB "
                f"(vectors {report['vectors_mb']:.0f} MB), peak RSS {report['peak_rss_mb']:.0f} MB; "
                f"exact 1 user p50 {report['exact']['p50_ms']:.2f} ms p99 {report['exact']['p99_ms']:.2f} ms"
            )
            for row in report["hnsw"]:
                print(
                    f"    efSearch {row['ef_search']:>4} k={row['k']:<3} recall {row['recall']:.4f}  "
                    f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms"
                )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
