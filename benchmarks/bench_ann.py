"""Benchmark the HNSW index against exact scoring: build time, memory, latency, recall.

    .venv/bin/python benchmarks/bench_ann.py                          # ML-20M-sized and 1M catalogues
    .venv/bin/python benchmarks/bench_ann.py --catalogues 27278 --kinds clustered --ef-search 128 512

Catalogues of ``--catalogues`` movies x 64, each in two kinds:

- ``random``: Gaussian embeddings (as ``random_index.py`` writes; a hard case for HNSW: no
  structure, every direction alike);
- ``clustered``: 64 taste clusters with spread, norms varying by a log-normal factor, closer to
  what training produces.

For each, in a fresh interpreter (its own peak RSS): the graphs are built with the shipped code
(``retrieval/ann.py``) and the default parameters (or ``--m``, ``--ef-construction``,
``--norm-ranges``) on ``--threads`` threads; then for ``--queries`` users, one at a time on one
thread, the p50/p99 latency of the graph search and of the exact path (one matrix-vector product
and ``torch.topk``, as the recommender does), and the recall of the ANN top-10/top-100 against
the exact one, for each ``--ef-search``. Each user asks the graphs for as many candidates as the
recommender asks for a user with nothing excluded (``k`` rounded up to a power of two, at least
16), and the candidates are merged by exact score, as the recommender does. Results go to ``--out``.

Built graphs are kept in ``--graph-cache`` (with their build time), keyed by catalogue and build
settings, so a rerun with other ``--ef-search`` values measures the same graphs without a rebuild
(a 1M-movie build takes minutes on 2 cores).
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

from two_tower_recsys.retrieval.ann import HnswParams

DIM = 64
DEFAULTS = HnswParams()


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


def fetch_width(k: int) -> int:
    """Candidates per graph the recommender asks for a user with nothing excluded."""
    from two_tower_recsys.inference.recommender import MIN_ANN_FETCH

    return max(MIN_ANN_FETCH, 1 << (k - 1).bit_length())


def cached_graph(args: argparse.Namespace, items: np.ndarray, params) -> tuple[object, float, float]:
    """(graphs, build seconds, file MB): from ``--graph-cache`` when built before, else built now."""
    from two_tower_recsys.retrieval.ann import build_hnsw, read_hnsw, write_hnsw
    from two_tower_recsys.utils.fileio import atomic_path

    settings = params.build_settings()
    name = f"{args.kind}-{args.n_items}-m{params.m}-efc{params.ef_construction}-r{params.norm_ranges}"
    path = args.graph_cache / f"{name}.npz"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists():
        info = json.loads(info_path.read_text())
        if info["settings"] == settings:
            return read_hnsw(path), info["build_s"], path.stat().st_size / 1e6
    started = time.perf_counter()
    graph = build_hnsw(items, params)
    build_s = time.perf_counter() - started
    args.graph_cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        write_hnsw(graph, tmp)
    info_path.write_text(json.dumps({"settings": settings, "build_s": build_s}) + "\n")
    return graph, build_s, path.stat().st_size / 1e6


def child(args: argparse.Namespace) -> None:
    import torch

    from two_tower_recsys.retrieval.ann import HnswParams, HnswSearcher

    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    items, queries = embeddings(args.kind, args.n_items, args.queries)
    rss_before = peak_rss_mb()
    params = HnswParams(m=args.m, ef_construction=args.ef_construction, norm_ranges=args.norm_ranges)
    graph, build_s, graph_mb = cached_graph(args, items, params)
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
                candidates = searcher.search(query[None, :], fetch_width(k))[0]
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
                "params": {
                    "m": params.m,
                    "ef_construction": params.ef_construction,
                    "norm_ranges": params.norm_ranges,
                },
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
    parser.add_argument("--ef-search", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--m", type=int, default=DEFAULTS.m, help="graph degree (default: the shipped default)"
    )
    parser.add_argument("--ef-construction", type=int, default=DEFAULTS.ef_construction)
    parser.add_argument("--norm-ranges", type=int, default=DEFAULTS.norm_ranges)
    parser.add_argument("--graph-cache", type=Path, default=Path(tempfile.gettempdir()) / "bench_ann_graphs")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_ann.json")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    common = ["--ef-search", *map(str, args.ef_search), "--ks", *map(str, args.ks)]
    common += ["--queries", str(args.queries), "--threads", str(args.threads)]
    common += ["--m", str(args.m), "--ef-construction", str(args.ef_construction)]
    common += ["--norm-ranges", str(args.norm_ranges), "--graph-cache", str(args.graph_cache)]
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
