"""Preprocessing at ML-20M scale: zip -> data/processed, wall time and peak RSS.

    .venv/bin/python benchmarks/bench_preprocessing.py [--zip PATH] [--repeats 3]

Each repeat runs in a fresh process (peak RSS is that process's own) into an empty processed
directory, so nothing is reused. Prints each stage's time and the medians over repeats.
Targets (issue #2): <= 20 s and <= 3 GB peak RSS on the 2-core development machine.
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


def child(zip_path: Path) -> None:
    from two_tower_recsys.data.movielens import read_movielens_zip
    from two_tower_recsys.preprocessing.processed import dataset_stats, save_processed, titles_for
    from two_tower_recsys.preprocessing.rated import rated_pairs
    from two_tower_recsys.preprocessing.split import FilterParams, build_splits
    from two_tower_recsys.utils.fileio import md5_file

    started = time.perf_counter()
    md5 = md5_file(zip_path)
    checksummed = time.perf_counter()
    tables = read_movielens_zip(zip_path)
    read = time.perf_counter()
    splits = build_splits(tables.ratings, FilterParams())
    split = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        titles = titles_for(splits.item_ids, tables.movies)
        stats = dataset_stats(splits, "bench", md5)
        rated = rated_pairs(tables.ratings, splits.user_ids, splits.item_ids)
        save_processed(Path(directory), splits, titles, stats, {"bench": True}, rated)
    written = time.perf_counter()
    print(
        json.dumps(
            {
                "md5_s": checksummed - started,
                "read_s": read - checksummed,
                "split_s": split - read,
                "write_s": written - split,
                "total_s": written - started,
                "peak_rss_mb": peak_rss_mb(),
                "stats": stats,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, default=None, help="default: the synthetic ML-20M-shaped zip")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        child(Path(rest[0]) if rest else args.zip)
        return
    zip_path = args.zip or ensure_ml20m_shaped_zip()
    runs = []
    for repeat in range(args.repeats):
        run = run_isolated(Path(__file__), [str(zip_path)])
        runs.append(run)
        stages = " ".join(f"{k}={v:.2f}" for k, v in run.items() if k.endswith("_s"))
        print(f"run {repeat + 1}: {stages} peak_rss_mb={run['peak_rss_mb']:.0f}", flush=True)
    keys = ["md5_s", "read_s", "split_s", "write_s", "total_s", "peak_rss_mb"]
    print("median:", json.dumps({k: round(v, 2) for k, v in median_summary(runs, keys).items()}))
    print("dataset:", json.dumps(runs[-1]["stats"]))


if __name__ == "__main__":
    main()
