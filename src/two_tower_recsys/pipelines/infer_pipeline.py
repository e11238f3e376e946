"""``two-tower infer``: print the top-K movies for ``infer.user_id`` as one line of JSON.

``{"user_id": 1, "k": 10, "fallback": false, "recommendations": [[movieId, score, title], ...]}``,
from the same :class:`Recommender` the served model uses. With ``infer.history=[296,318,593]`` (a
sequence user tower) the user vector is computed from that history instead. Only the JSON goes
to stdout; logs and errors (one line, exit status 2) go to stderr.
"""

from __future__ import annotations

import json

from two_tower_recsys.inference.recommender import Recommender
from two_tower_recsys.pipelines.hydra_edge import hydra_entry
from two_tower_recsys.settings import AppConfig


def run(settings: AppConfig) -> None:
    recommender = Recommender.from_settings(settings.paths.artifacts_dir, settings.infer)
    infer = settings.infer
    histories = None if infer.history is None else [list(infer.history)]
    [answer] = recommender.recommend([infer.user_id], infer.k, exclude=infer.exclude, histories=histories)
    print(json.dumps(answer.as_dict(), ensure_ascii=False))


main = hydra_entry(run)

if __name__ == "__main__":
    main()
