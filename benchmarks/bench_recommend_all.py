"""Benchmark ``two-tower recommend-all``: the top-k of every user of an ML-20M-sized index to parquet.

    .venv/bin/python benchmarks/bench_recommend_all.py                 # 138,493 users x 27,278 x 64, k=100
    .venv/bin/python benchmarks/bench_recommend_all.py --index-kind hnsw --k 10

The index has random embeddings and, like ML-20M, ~70 positives and ~74 other ratings per user
(``exclude=rated`` hides both); it is written once to ``--index`` and reused. Each repeat runs in a
fresh interpreter (its own peak RSS) and times loading and writing separately; the medians are
printed and written to ``benchmarks/results/bench_recommend_all.json``. Target: <= 15 s for the
writing at k=100 on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, median_summary, peak_rss_mb, run_isolated
from random_index import ML20M_MOVIES, ML20M_USERS, write_random_index

from two_tower_recsys.utils.fileio import MANIFEST_NAME


def child(args: argparse.Namespace) -> None:
    import torch

    from two_tower_recsys.inference.batch import write_all_recommendations
    from two_tower_recsys.inference.recommender import Recommender

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    recommender = Recommender.from_artifacts(args.index, batch_size=args.batch_size, index=args.index_kind)
    loaded = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "recommendations.parquet"
        summary = write_all_recommendations(recommender, path, args.k, exclude=args.exclude, progress=False)
        written = time.perf_counter()
        size_mb = path.stat().st_size / 1e6
    print(
        json.dumps(
            {
                "load_s": loaded - started,
                "write_s": written - loaded,
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
    parser.add_argument("--index-kind", choices=["exact", "hnsw"], default="exact")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--exclude", choices=["rated", "positives", "none"], default="rated")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if not (args.index / MANIFEST_NAME).exists():
        write_random_index(
            args.index, n_users=ML20M_USERS, n_items=ML20M_MOVIES, mean_positives=70, mean_other_ratings=74
        )
    forwarded = [a for a in sys.argv[1:] if a != "--child"]
    runs = [run_isolated(Path(__file__), forwarded) for _ in range(args.repeats)]
    summary = {
        **median_summary(runs, ["load_s", "write_s", "peak_rss_mb", "file_mb"]),
        "rows": runs[0]["rows"],
    }
    report = {
        "settings": {k: str(v) for k, v in vars(args).items() if k != "child"},
        "runs": runs,
        "median": summary,
    }
    print(
        f"recommend-all {runs[0]['users']:,} users, k={args.k}, exclude={args.exclude}, "
        f"index={args.index_kind}: "
        f"write {summary['write_s']:.1f} s (load {summary['load_s']:.1f} s), {summary['rows']:,} rows, "
        f"{summary['file_mb']:.0f} MB, peak RSS {summary['peak_rss_mb']:.0f} MB (medians of {args.repeats})"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_recommend_all.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
