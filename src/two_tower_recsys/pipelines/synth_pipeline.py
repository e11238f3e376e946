"""``two-tower synth``: write a synthetic MovieLens-format zip to ``paths.raw_zip``.

``two-tower synth`` writes data/raw/synthetic.zip; ``two-tower synth data=synthetic-20m`` the
ML-20M-shaped one; sizes are overridable, e.g.
``two-tower synth data.synthetic.users=500 data.synthetic.ratings=20000 paths.raw_zip=/tmp/x.zip``.
"""

from __future__ import annotations

import logging
import time

from two_tower_recsys.data.synthetic import write_synthetic_zip
from two_tower_recsys.errors import ConfigError
from two_tower_recsys.pipelines.hydra_edge import hydra_entry
from two_tower_recsys.settings import AppConfig

log = logging.getLogger(__name__)


def run(settings: AppConfig) -> None:
    spec = settings.data.synthetic
    if spec is None:
        raise ConfigError(
            f"data={settings.data.name} is not a generated dataset: "
            "use data=synthetic or data=synthetic-20m with two-tower synth"
        )
    path = settings.paths.raw_zip
    started = time.perf_counter()
    write_synthetic_zip(path, spec, name=settings.data.name, progress=settings.trainer.progress_bar)
    log.info(
        "wrote %s in %.1f s: %d users, %d movies, %d ratings, %d taste clusters (seed %d), %.1f MB",
        path,
        time.perf_counter() - started,
        spec.users,
        spec.movies,
        spec.ratings,
        spec.clusters,
        spec.seed,
        path.stat().st_size / 1e6,
    )


main = hydra_entry(run)

if __name__ == "__main__":
    main()
