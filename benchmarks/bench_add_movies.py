"""``two-tower add-movies`` at ML-20M's size: 1,000 movies added to a 27,278-movie index.

    nice -n 10 .venv/bin/python benchmarks/bench_add_movies.py --movies 1000 --repeats 3 --answer-table-k 100

Writes a random ML-20M-sized index (138,493 users x 27,278 movies x 64, ~70 positives a user)
whose movie tower reads genres, year and title (a randomly initialised content encoder: the time
does not depend on what it learned) and packages it (``infer.answer_table_k`` as given: 0 skips
the answer table), then runs what the command runs (``add_movies_pipeline.add_and_repackage``)
on a fresh copy of both each repeat and prints the time to add the movies to the index and the
time to rebuild the MLflow package: with an answer table, the previous one merged with the new
movies. ``--full-rebuilds`` more packages of the grown index are then built without the previous
table (every user ranked again, as before the merge existed): the same run's reference.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from random_index import ML20M_MOVIES, ML20M_USERS, write_random_index

from two_tower_recsys.data.movielens import read_movies_csv
from two_tower_recsys.inference.packaging import package_model
from two_tower_recsys.models.components.content import ContentEncoder, ContentVocabulary
from two_tower_recsys.pipelines.add_movies_pipeline import add_and_repackage
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
    parser.add_argument("--full-rebuilds", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")  # says which table path ran
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
        package_model(root / "index", root / "index" / "mlflow_model", infer)  # what training leaves
        index_s, package_s, full_s = [], [], []
        artifacts = root / "artifacts"
        for _ in range(args.repeats):
            shutil.rmtree(artifacts, ignore_errors=True)
            shutil.copytree(root / "index", artifacts)
            movies = read_movies_csv(csv)
            added = add_and_repackage(artifacts, artifacts / "mlflow_model", movies, str(csv), infer)
            index_s.append(added.index_seconds)
            package_s.append(added.package_seconds)
            assert added.manifest["n_items"] == ML20M_MOVIES + args.movies
        for _ in range(args.full_rebuilds):
            started = time.perf_counter()
            package_model(artifacts, root / "full_rebuild", infer)
            full_s.append(time.perf_counter() - started)
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
        if full_s:
            print(
                "  the same package with every user ranked again (no previous table): median "
                f"{statistics.median(full_s):.2f} s, runs {', '.join(f'{s:.2f}' for s in full_s)}"
            )


if __name__ == "__main__":
    main()
