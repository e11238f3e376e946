"""``two-tower add-movies paths.new_movies=<movies.csv>``: new movies, recommendable at once.

Appends the file's movies (movieId, title, genres; the format of MovieLens' movies.csv) to the
trained index in ``paths.artifacts_dir``, each at its content vector, without retraining
(:mod:`~two_tower_recsys.artifacts.catalogue`), then rebuilds the MLflow package from the new
index, as training does. A served model answers with them after a restart. A bad row is a
one-line error naming its line (exit status 2), and nothing is written.
"""

from __future__ import annotations

import logging
import time

from two_tower_recsys.artifacts.catalogue import add_movies
from two_tower_recsys.data.movielens import read_movies_csv
from two_tower_recsys.errors import ConfigError
from two_tower_recsys.inference.packaging import package_model
from two_tower_recsys.pipelines.hydra_edge import hydra_entry
from two_tower_recsys.settings import AppConfig

log = logging.getLogger(__name__)


def run(settings: AppConfig) -> None:
    paths = settings.paths
    if paths.new_movies is None:
        raise ConfigError("add-movies needs paths.new_movies=<movies.csv> (columns movieId,title,genres)")
    started = time.perf_counter()
    movies = read_movies_csv(paths.new_movies)
    manifest = add_movies(paths.artifacts_dir, movies, str(paths.new_movies))
    indexed = time.perf_counter()
    packaged = package_model(paths.artifacts_dir, paths.mlflow_model_dir, settings.infer)
    log.info(
        "added %d movies to %s in %.2f s (now %d); rebuilt the MLflow package %s in %.2f s",
        movies.height,
        paths.artifacts_dir,
        indexed - started,
        manifest["n_items"],
        packaged.path,
        time.perf_counter() - indexed,
    )
    if paths.onnx_model.exists():
        log.warning(
            "%s scores (user_idx, item_idx) of the trained movies only: it does not know the added ones",
            paths.onnx_model,
        )
    print(f"added {movies.height} movies; the index now holds {manifest['n_items']}")


main = hydra_entry(run)

if __name__ == "__main__":
    main()
