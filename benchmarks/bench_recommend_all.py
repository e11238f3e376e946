"""Benchmark ``two-tower recommend-all``: the top-k of every user of an ML-20M-sized index to parquet.

    .venv/bin/python benchmarks/bench_recommend_all.py                 # 138,493 users x 27,278 x 64, k=100
    .venv/bin/python benchmarks/bench_recommend_all.py --index-kind pq --k 10

The index has random embeddings and, like ML-20M, ~70 positives and ~74 other ratings per user
(``exclude=rated`` hides both); it is written once to ``--index`` and reused. Each repeat runs in a
fresh interpreter (its own peak RSS), with glibc's malloc thresholds raised as the ``two-tower``
commands raise them, and times loading and writing separately (wall clock, and the CPU seconds
the process used: on a shared machine the CPU figure moves less). ``--variants`` compares, in
the same run and interleaved repeat by repeat:

- ``new``: the shipped code: ``--threads`` batches at once, each in its own thread on one torch
  thread; users scored, masked and ranked ~16 MB of scores at a time; the two-stage top-k
  (``retrieval/topk.py``); dictionaries only on the repeating parquet columns;
- ``old``: the code before it, restored by settings: one batch of ``--batch-size`` users at a
  time on ``--threads`` torch threads, one ``torch.topk`` over the whole batch, parquet's
  default dictionaries;
- ``old-malloc``: ``old`` without the raised malloc thresholds (as this script measured it before).

The medians are printed and written to ``benchmarks/results/bench_recommend_all.json``.
Target: <= 15 s for the writing at k=100 on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, median_summary, peak_rss_mb, run_isolated
from random_index import ML20M_MOVIES, ML20M_USERS, write_random_index

from two_tower_recsys.utils.fileio import MANIFEST_NAME

VARIANTS = ("new", "old", "old-malloc")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(args: argparse.Namespace) -> None:
    import torch

    from two_tower_recsys.inference import batch
    from two_tower_recsys.inference.batch import write_all_recommendations
    from two_tower_recsys.inference.recommender import Recommender
    from two_tower_recsys.retrieval import topk
    from two_tower_recsys.utils.allocator import keep_freed_memory_for_reuse

    if args.variant != "old-malloc":
        keep_freed_memory_for_reuse()  # as hydra_edge does for every two-tower command
    if args.variant != "new":  # the code before the two-stage top-k, restored by its settings
        topk.SCORE_CHUNK_BYTES = 1 << 62
        topk.TWO_STAGE_MIN_ROWS = 1 << 62
        batch.PARQUET_OPTIONS = {}
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    recommender = Recommender.from_artifacts(args.index, batch_size=args.batch_size, index=args.index_kind)
    loaded = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "recommendations.parquet"
        cpu_before = cpu_seconds()
        summary = write_all_recommendations(
            recommender,
            path,
            args.k,
            exclude=args.exclude,
            progress=False,
            workers=None if args.variant == "new" else 1,
        )
        written = time.perf_counter()
        write_cpu_s = cpu_seconds() - cpu_before
        size_mb = path.stat().st_size / 1e6
    print(
        json.dumps(
            {
                "load_s": loaded - started,
                "write_s": written - loaded,
                "write_cpu_s": write_cpu_s,
                "users": summary.users,
                "rows": summary.rows,
                "file_mb": size_mb,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=Path, default=RESULTS / "index-20m-rated")
    parser.add_argument("--index-kind", choices=["exact", "pq", "hnsw"], default="exact")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--exclude", choices=["rated", "positives", "none"], default="rated")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["old", "new"])
    parser.add_argument("--variant", choices=VARIANTS, default="new", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if not (args.index / MANIFEST_NAME).exists():
        write_random_index(
            args.index, n_users=ML20M_USERS, n_items=ML20M_MOVIES, mean_positives=70, mean_other_ratings=74
        )
    forwarded = [a for a in sys.argv[1:] if a != "--child"]
    runs: dict[str, list[dict]] = {variant: [] for variant in args.variants}
    for _ in range(args.repeats):  # interleaved: a burst of load on the machine hits every variant
        for variant in args.variants:
            runs[variant].append(run_isolated(Path(__file__), [*forwarded, "--variant", variant]))
    keys = ["load_s", "write_s", "write_cpu_s", "peak_rss_mb", "file_mb"]
    medians = {variant: {**median_summary(r, keys), "rows": r[0]["rows"]} for variant, r in runs.items()}
    report = {
        "settings": {k: str(v) for k, v in vars(args).items() if k not in ("child", "variant")},
        "runs": runs,
        "median": medians,
    }
    first = next(iter(runs.values()))[0]
    print(
        f"recommend-all {first['users']:,} users, k={args.k}, exclude={args.exclude}, "
        f"index={args.index_kind}, {args.threads} threads (medians of {args.repeats}):"
    )
    for variant, summary in medians.items():
        print(
            f"  {variant:>10}: write {summary['write_s']:.1f} s ({summary['write_cpu_s']:.1f} CPU s), "
            f"load {summary['load_s']:.1f} s, {summary['rows']:,} rows, {summary['file_mb']:.0f} MB, "
            f"peak RSS {summary['peak_rss_mb']:.0f} MB"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_recommend_all.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
