"""``two-tower add-movies paths.new_movies=<movies.csv>``: new movies, recommendable at once.

Appends the file's movies (movieId, title, genres; the format of MovieLens' movies.csv) to the
trained index in ``paths.artifacts_dir``, each at its content vector, without retraining
(:mod:`~two_tower_recsys.artifacts.catalogue`), then rebuilds the MLflow package from the new
index, as training does; its answer table is the previous package's merged with the new movies
(:mod:`~two_tower_recsys.inference.answer_table_growth`) where that package was built from the
index the movies were added to. A served model answers with them after a restart. A bad row is a
one-line error naming its line (exit status 2), and nothing is written.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from two_tower_recsys.artifacts.catalogue import add_movies
from two_tower_recsys.data.movielens import read_movies_csv
from two_tower_recsys.errors import ConfigError
from two_tower_recsys.inference.answer_table_growth import GrownCatalogue, previous_answer_table
from two_tower_recsys.inference.packaging import PACKAGED_INDEX, PackagedModel, package_model
from two_tower_recsys.pipelines.hydra_edge import hydra_entry
from two_tower_recsys.settings import AppConfig, InferConfig
from two_tower_recsys.utils.fileio import MANIFEST_NAME, read_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MoviesAdded:
    manifest: dict[str, Any]  # the grown index's
    package: PackagedModel
    index_seconds: float  # check the rows, encode, rewrite the index
    package_seconds: float  # rebuild the MLflow package (answer table included)


def add_and_repackage(
    artifacts_dir: Path, package_dir: Path, movies: pl.DataFrame, source: str, infer: InferConfig
) -> MoviesAdded:
    """Append ``movies`` to the index in ``artifacts_dir`` and rebuild the package at ``package_dir``."""
    started = time.perf_counter()
    # The index as it is before the movies are added. Not verified here: add_movies verifies the
    # directory and refuses a missing or damaged one in one line (so must this read's failure).
    try:
        index_before = read_json(Path(artifacts_dir) / MANIFEST_NAME)
    except (OSError, ValueError):
        index_before = None
    manifest = add_movies(artifacts_dir, movies, source)
    indexed = time.perf_counter()
    previous = None
    if index_before is not None:
        previous = previous_answer_table(Path(package_dir) / PACKAGED_INDEX, index_before)
    grown = None if previous is None else GrownCatalogue(previous, manifest["n_items"] - movies.height)
    packaged = package_model(artifacts_dir, package_dir, infer, grown)
    return MoviesAdded(manifest, packaged, indexed - started, time.perf_counter() - indexed)


def run(settings: AppConfig) -> None:
    paths = settings.paths
    if paths.new_movies is None:
        raise ConfigError("add-movies needs paths.new_movies=<movies.csv> (columns movieId,title,genres)")
    movies = read_movies_csv(paths.new_movies)
    added = add_and_repackage(
        paths.artifacts_dir, paths.mlflow_model_dir, movies, str(paths.new_movies), settings.infer
    )
    manifest = added.manifest
    log.info(
        "added %d movies to %s in %.2f s (now %d); rebuilt the MLflow package %s in %.2f s",
        movies.height,
        paths.artifacts_dir,
        added.index_seconds,
        manifest["n_items"],
        added.package.path,
        added.package_seconds,
    )
    if paths.onnx_model.exists():
        log.warning(
            "%s was exported before these movies were added: rerun two-tower export-onnx to score them",
            paths.onnx_model,
        )
    print(f"added {movies.height} movies; the index now holds {manifest['n_items']}")


main = hydra_entry(run)

if __name__ == "__main__":
    main()
