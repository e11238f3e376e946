"""``two-tower add-movies`` at ML-20M's size: 1,000 movies added to a 27,278-movie index.

    nice -n 10 .venv/bin/python benchmarks/bench_add_movies.py --movies 1000 --repeats 3

Writes a random ML-20M-sized index (138,493 users x 27,278 movies x 64, ~70 positives a user)
whose movie tower reads genres, year and title (a randomly initialised content encoder: the time
does not depend on what it learned), then runs the real command (``add_movies_pipeline.run``)
on a fresh copy each repeat and prints the time to add the movies to the index and the time to
rebuild the MLflow package (``infer.answer_table_k`` as given: 0 skips the answer table).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from random_index import ML20M_MOVIES, ML20M_USERS, write_random_index

from two_tower_recsys.artifacts.catalogue import add_movies
from two_tower_recsys.data.movielens import read_movies_csv
from two_tower_recsys.inference.packaging import package_model
from two_tower_recsys.models.components.content import ContentEncoder, ContentVocabulary
from two_tower_recsys.settings import InferConfig

GENRES = ("Action", "Adventure", "Animation", "Children", "Comedy", "Drama", "Horror", "Romance", "Thriller")


def new_movies_csv(path: Path, count: int, first_id: int) -> Path:
    rows = [
        f'{first_id + i},"New Movie {i}, The ({2020 + i % 7})",'
        f"{GENRES[i % len(GENRES)]}|{GENRES[(i * 7) % len(GENRES)]}"
        for i in range(count)
    ]
    path.write_text("movieId,title,genres\n" + "\n".join(rows) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--movies", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--answer-table-k", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-add-movies-") as scratch:
        root = Path(scratch)
        vocabulary = ContentVocabulary(("genres", "year", "title"), GENRES)
        write_random_index(
            root / "index",
            n_users=ML20M_USERS,
            n_items=ML20M_MOVIES,
            dim=64,
            movie_content=ContentEncoder(vocabulary, 64, init_std=0.1),
        )
        csv = new_movies_csv(root / "new.csv", args.movies, first_id=ML20M_MOVIES + 1)
        infer = InferConfig(answer_table_k=args.answer_table_k)
        index_s, package_s = [], []
        for _ in range(args.repeats):
            artifacts = root / "artifacts"
            shutil.rmtree(artifacts, ignore_errors=True)
            shutil.copytree(root / "index", artifacts)
            started = time.perf_counter()
            movies = read_movies_csv(csv)
            manifest = add_movies(artifacts, movies, str(csv))
            indexed = time.perf_counter()
            package_model(artifacts, artifacts / "mlflow_model", infer)
            package_s.append(time.perf_counter() - indexed)
            index_s.append(indexed - started)
            assert manifest["n_items"] == ML20M_MOVIES + args.movies
        size = f"a {ML20M_MOVIES}-movie index ({ML20M_USERS} users)"
        print(f"added {args.movies} movies to {size}, {args.repeats} runs")
        print(
            "  index rewritten (read, check, encode, stage, commit): "
            f"median {statistics.median(index_s):.2f} s, runs {', '.join(f'{s:.2f}' for s in index_s)}"
        )
        print(
            f"  MLflow package rebuilt (answer_table_k={args.answer_table_k}): median "
            f"{statistics.median(package_s):.2f} s, runs {', '.join(f'{s:.2f}' for s in package_s)}"
        )


if __name__ == "__main__":
    main()
