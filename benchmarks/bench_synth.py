"""Benchmark the synthetic generator: wall time, peak memory and the generated dataset's statistics.

    .venv/bin/python benchmarks/bench_synth.py            # ML-20M shape -> benchmarks/results/
    .venv/bin/python benchmarks/bench_synth.py --users 2000 --movies 1500 --ratings 150000 \\
        --clusters 16 --out /tmp/synthetic.zip

Peak RSS is read right after generation, before the zip is read back for the statistics.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from two_tower_recsys.data.movielens import read_movielens_zip
from two_tower_recsys.data.synthetic import write_synthetic_zip
from two_tower_recsys.settings import SyntheticSpec

RESULTS = Path(__file__).resolve().parent / "results"
ML20M = SyntheticSpec(users=138_493, movies=27_278, ratings=20_000_263, seed=0, clusters=64)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "synthetic-20m.zip")
    parser.add_argument("--name", default="synthetic-20m", help="folder inside the zip")
    for field in ("users", "movies", "ratings", "seed", "clusters"):
        parser.add_argument(f"--{field}", type=int, default=getattr(ML20M, field))
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def gini(counts: np.ndarray) -> float:
    ordered = np.sort(counts).astype(np.float64)
    n = len(ordered)
    return float(np.dot(2 * np.arange(1, n + 1) - n - 1, ordered) / (n * ordered.sum()))


def dataset_stats(path: Path) -> dict[str, str]:
    tables = read_movielens_zip(path)
    ratings = tables.ratings
    per_movie = np.sort(ratings.group_by("movieId").len()["len"].to_numpy())[::-1]
    per_user = ratings.group_by("userId").len()["len"].to_numpy()
    catalogue = tables.movies.height
    stars = ratings["rating"]
    moment = pl.from_epoch("timestamp")
    first, last = ratings.select(moment.min().alias("first"), moment.max().alias("last")).row(0)
    return {
        "users": f"{ratings['userId'].n_unique():,}",
        "movies (catalogue / rated)": f"{catalogue:,} / {len(per_movie):,}",
        "ratings": f"{ratings.height:,}",
        "share of ratings >= 4": f"{(stars >= 4).mean():.3f}",
        "mean rating": f"{stars.mean():.3f}",
        "half-star share": f"{(stars % 1 != 0).mean():.3f}",
        "top-1% movies' share": f"{per_movie[: max(1, catalogue // 100)].sum() / ratings.height:.3f}",
        "top-10% movies' share": f"{per_movie[: max(1, catalogue // 10)].sum() / ratings.height:.3f}",
        "item Gini": f"{gini(per_movie):.3f}",
        "ratings per movie (min/median/max)": (
            f"{per_movie.min()} / {np.median(per_movie):.0f} / {per_movie.max()}"
        ),
        "movies with < 5 ratings": f"{int((per_movie < 5).sum()):,}",
        "ratings per user (min/median/mean/max)": (
            f"{per_user.min()} / {np.median(per_user):.0f} / {per_user.mean():.1f} / {per_user.max()}"
        ),
        "time span": f"{first} .. {last}",
    }


def main() -> None:
    args = parse_args()
    spec = SyntheticSpec(
        users=args.users, movies=args.movies, ratings=args.ratings, seed=args.seed, clusters=args.clusters
    )
    started = time.perf_counter()
    write_synthetic_zip(args.out, spec, name=args.name, progress=not args.no_progress)
    wall = time.perf_counter() - started
    rss = peak_rss_mb()
    rows = {
        "spec": str(spec),
        "zip": f"{args.out} ({args.out.stat().st_size / 1e6:.1f} MB)",
        "wall time": f"{wall:.1f} s",
        "peak RSS": f"{rss:,.0f} MB",
        **dataset_stats(args.out),
    }
    width = max(map(len, rows))
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
