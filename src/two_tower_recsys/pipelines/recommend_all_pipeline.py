"""``two-tower recommend-all``: the top-K of every user, to ``paths.recommendations`` (parquet).

Columns ``user_id, rank, movieId, score``; ``infer.k``, ``infer.exclude``, ``infer.index`` and
``infer.batch_size`` apply as they do to ``two-tower infer`` and to the served model (one core).
"""

from __future__ import annotations

import logging
import time

from two_tower_recsys.inference.batch import write_all_recommendations
from two_tower_recsys.inference.recommender import Recommender
from two_tower_recsys.pipelines.hydra_edge import hydra_entry
from two_tower_recsys.settings import AppConfig

log = logging.getLogger(__name__)


def run(settings: AppConfig) -> None:
    started = time.perf_counter()
    recommender = Recommender.from_settings(settings.paths.artifacts_dir, settings.infer)
    summary = write_all_recommendations(
        recommender,
        settings.paths.recommendations,
        settings.infer.k,
        exclude=settings.infer.exclude,
        progress=settings.trainer.progress_bar,
    )
    log.info(
        "wrote %d recommendations for %d users to %s in %.1f s",
        summary.rows,
        summary.users,
        summary.path,
        time.perf_counter() - started,
    )


main = hydra_entry(run)

if __name__ == "__main__":
    main()
