"""``two-tower similar``: print the ``infer.k`` movies most like ``infer.movie_id`` as one line of JSON.

``{"movie_id": 1, "title": "Toy Story (1995)", "k": 10, "similar": [[movieId, score, title], ...]}``
(score: the cosine of the two movie vectors; the movie itself is never listed), from the same
:class:`SimilarMovieFinder` the served model uses. An unknown movie is a one-line error (exit
status 2).
"""

from __future__ import annotations

import json

from two_tower_recsys.artifacts.store import load_index
from two_tower_recsys.inference.similar import SimilarMovieFinder
from two_tower_recsys.pipelines.hydra_edge import hydra_entry
from two_tower_recsys.settings import AppConfig


def run(settings: AppConfig) -> None:
    finder = SimilarMovieFinder(load_index(settings.paths.artifacts_dir))
    [answer] = finder.similar([settings.infer.movie_id], settings.infer.k)
    print(json.dumps(answer.as_dict(), ensure_ascii=False))


main = hydra_entry(run)

if __name__ == "__main__":
    main()
