"""Benchmark the approximate indexes against exact scoring: build time, memory, latency, recall.

    .venv/bin/python benchmarks/bench_ann.py                          # ML-20M-sized and 1M catalogues
    .venv/bin/python benchmarks/bench_ann.py --catalogues 27278 --kinds clustered --indexes pq \
        --refine-factors 5 10 20

Catalogues of ``--catalogues`` movies x 64, each in two kinds:

- ``random``: Gaussian embeddings (as ``random_index.py`` writes; a hard case for a graph: no
  structure, every direction alike);
- ``clustered``: 64 taste clusters with spread, norms varying by a log-normal factor, closer to
  what training produces;

and, with ``--trained-index DIR``, the movie embeddings of a trained index (e.g. ``artifacts/``
after ``two-tower train data=synthetic-20m``), queried with ``--queries`` of its users' vectors.

For each catalogue and each of ``--indexes`` (``pq``: the 4-bit scan of ``retrieval/pq_scan.py``;
``hnsw``: the graphs of ``retrieval/ann.py``), in a fresh interpreter (its own peak RSS): the
index is built with the shipped code and the default parameters (or ``--m``,
``--ef-construction``, ``--norm-ranges``) on ``--threads`` threads; then for ``--queries`` users,
one at a time on one thread, the p50/p99 latency of the candidate search plus the exact scoring
of the candidates, and of the exact path (one matrix-vector product and ``torch.topk``, as the
recommender does), and the recall of the approximate top-10/top-100 against the exact one, for
each ``--refine-factors`` (pq) or ``--ef-search`` (hnsw) value. Each user asks for as many
candidates as the recommender asks for a user with nothing excluded (the scan ``refine_factor x
k``, each graph ``k``), and the candidates are merged by exact score, as the recommender does.
Results go to ``--out``.

Built graphs are kept in ``--graph-cache`` (with their build time), keyed by catalogue and build
settings, so a rerun with other ``--ef-search`` values measures the same graphs without a rebuild
(a 1M-movie build takes up to 50 minutes on 2 cores; the scan's index builds in seconds).
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
from two_tower_recsys.retrieval.pq_scan import PqParams, PqSearcher

DIM = 64
DEFAULTS = HnswParams()
PQ_DEFAULTS = PqParams()


def trained_embeddings(index_dir: Path, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from two_tower_recsys.artifacts.store import load_index

    index = load_index(index_dir)  # verified against its manifest
    users = np.random.default_rng(seed).choice(len(index.user_embeddings), n_queries, replace=False)
    return index.item_embeddings.numpy(), index.user_embeddings[np.sort(users)].numpy()


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


def current_rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99))}


def cached_graph(args: argparse.Namespace, items: np.ndarray, params) -> tuple[object, float, float]:
    """(graphs, build seconds, file MB): from ``--graph-cache`` when built before, else built now."""
    from two_tower_recsys.retrieval.ann import build_hnsw, read_hnsw, write_hnsw
    from two_tower_recsys.utils.fileio import atomic_path

    settings = params.build_settings()
    name = f"{args.kind}-{args.n_items}-m{params.m}-efc{params.ef_construction}-r{params.norm_ranges}"
    path = args.graph_cache / f"{name}.npz"
    info_path = path.with_suffix(".json")
    if args.kind == "trained":  # another training run has other embeddings: never a cached graph
        started = time.perf_counter()
        graph = build_hnsw(items, params)
        build_s = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as directory:
            write_hnsw(graph, Path(directory) / "graphs.npz")
            return graph, build_s, (Path(directory) / "graphs.npz").stat().st_size / 1e6
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


def built_index(args: argparse.Namespace, items: np.ndarray) -> tuple[list, float, float, str]:
    """(searchers, one per setting; build seconds; index MB; the setting's name)."""
    if args.index == "pq":
        started = time.perf_counter()
        built = PqParams().build(items)
        build_s = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as directory:
            built.write(Path(directory) / "items_pq.npy")
            index_mb = (Path(directory) / "items_pq.npy").stat().st_size / 1e6
        searchers = [PqSearcher(built.index, refine_factor) for refine_factor in args.refine_factors]
        return searchers, build_s, index_mb, "refine_factor"
    from two_tower_recsys.retrieval.ann import HnswSearcher

    params = HnswParams(m=args.m, ef_construction=args.ef_construction, norm_ranges=args.norm_ranges)
    graph, build_s, graph_mb = cached_graph(args, items, params)
    return [HnswSearcher(graph, ef_search) for ef_search in args.ef_search], build_s, graph_mb, "ef_search"


def index_params(args: argparse.Namespace) -> dict:
    if args.index == "pq":
        return {"bits_per_dimension": PQ_DEFAULTS.build_settings()["bits_per_dimension"]}
    return {"m": args.m, "ef_construction": args.ef_construction, "norm_ranges": args.norm_ranges}


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    if args.kind == "trained":
        items, queries = trained_embeddings(args.trained_index, args.queries)
    else:
        items, queries = embeddings(args.kind, args.n_items, args.queries)
    rss_before = peak_rss_mb()
    searchers, build_s, index_mb, setting = built_index(args, items)
    # What serving holds (vectors + index); the peak also counts the measuring loops' allocator churn.
    rss_after_build = current_rss_mb()
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
    for searcher in searchers:
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
            value = getattr(searcher, setting)
            results.append({setting: value, "k": k, "recall": float(recall), **percentiles_ms(times)})
    print(
        json.dumps(
            {
                "kind": args.kind,
                "n_items": len(items),
                "index": args.index,
                "params": index_params(args),
                "build_s": build_s,
                "index_mb": index_mb,
                "vectors_mb": items.nbytes / 1e6,
                "peak_rss_mb": peak_rss_mb(),
                "rss_before_build_mb": rss_before,
                "rss_after_build_mb": rss_after_build,
                "exact": percentiles_ms(exact_times),
                "approximate": results,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="random", help=argparse.SUPPRESS)
    parser.add_argument("--n-items", type=int, default=27_278, help=argparse.SUPPRESS)
    parser.add_argument("--catalogues", type=int, nargs="*", default=[27_278, 1_000_000])
    parser.add_argument("--kinds", nargs="+", default=["random", "clustered"])
    parser.add_argument("--trained-index", type=Path, help="also: a trained index's movies and users")
    parser.add_argument("--index", default="pq", help=argparse.SUPPRESS)
    parser.add_argument("--indexes", nargs="+", choices=["pq", "hnsw"], default=["pq", "hnsw"])
    parser.add_argument("--refine-factors", type=int, nargs="+", default=[5, PQ_DEFAULTS.refine_factor, 20])
    parser.add_argument("--ef-search", type=int, nargs="+", default=[512, DEFAULTS.ef_search, 2048])
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
    common += ["--refine-factors", *map(str, args.refine_factors)]
    common += ["--queries", str(args.queries), "--threads", str(args.threads)]
    common += ["--m", str(args.m), "--ef-construction", str(args.ef_construction)]
    common += ["--norm-ranges", str(args.norm_ranges), "--graph-cache", str(args.graph_cache)]
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    reports = []
    catalogues = [(kind, n_items) for n_items in args.catalogues for kind in args.kinds]
    if args.trained_index:
        catalogues.insert(0, ("trained", 0))
        common += ["--trained-index", str(args.trained_index)]
    for kind, n_items in catalogues:
        for index in args.indexes:
            run_args = ["--kind", kind, "--n-items", str(n_items), "--index", index, *common]
            report = run_isolated(Path(__file__), run_args)
            reports.append(report)
            out.write_text(json.dumps(reports, indent=2) + "\n")  # partial results survive a long run
            print_report(report)


def print_report(report: dict) -> None:
    print(
        f"{report['kind']:>9} {report['n_items']:>9,} items, {report['index']}: "
        f"build {report['build_s']:.1f} s, "
        f"index {report['index_mb']:.0f} MB "
        f"(vectors {report['vectors_mb']:.0f} MB), RSS after the build {report['rss_after_build_mb']:.0f} MB "
        f"(peak {report['peak_rss_mb']:.0f} MB); "
        f"exact 1 user p50 {report['exact']['p50_ms']:.2f} ms p99 {report['exact']['p99_ms']:.2f} ms"
    )
    for row in report["approximate"]:
        setting = next(key for key in ("refine_factor", "ef_search") if key in row)
        print(
            f"    {setting} {row[setting]:>4} k={row['k']:<3} recall {row['recall']:.4f}  "
            f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
