"""Inference with a sequence user tower at ML-20M scale: one user, 1,000 users, and a full evaluation.

    .venv/bin/python benchmarks/bench_sequence_inference.py [--repeats 200] [--max-history 50] [--threads 1]

An index of 138,493 users x 27,278 movies x 64 with a (randomly initialised) sequence tower of 2
blocks and 2 heads: latency does not depend on what the weights learned. Measured in process,
through the one recommendation core and the one evaluator:
- one user answered from a history of ``max-history`` movies (the tower runs, then the exact
  top-10 over the catalogue with the user's rated movies hidden): p50 / p99 over ``repeats``;
- 1,000 users with histories in one call (median of 5);
- evaluating every user: a SequenceScorer over each user's stored history, the ranks of 137k
  held-out movies (the evaluator's batches), once.
Targets (issue #8): p50 <= 3 ms, 1,000 users <= 0.5 s, evaluation <= 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import peak_rss_mb
from random_index import ML20M_MOVIES, ML20M_USERS, write_random_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--max-history", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (serve.torch_threads: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from two_tower_recsys.evaluation.evaluator import EvaluationTask, evaluate
    from two_tower_recsys.inference.recommender import Recommender
    from two_tower_recsys.models.components.sequence_tower import TowerShape
    from two_tower_recsys.preprocessing.histories import UserHistories
    from two_tower_recsys.retrieval.scorers import SequenceScorer

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        write_random_index(
            Path(scratch),
            n_users=ML20M_USERS,
            n_items=ML20M_MOVIES,
            mean_positives=70,
            mean_other_ratings=70,
            history_tower=TowerShape(args.max_history, 2, 2),
        )
        core = Recommender.from_artifacts(Path(scratch))
        print(f"index written and loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        index = core.index

        def history() -> list[int]:
            return rng.integers(1, ML20M_MOVIES + 1, args.max_history).tolist()

        one = []
        for repeat in range(args.repeats + 10):
            user, movies = int(rng.integers(1, ML20M_USERS + 1)), history()
            started = time.perf_counter()
            core.recommend([user], 10, histories=[movies])
            if repeat >= 10:  # warm-up
                one.append((time.perf_counter() - started) * 1e3)
        thousand = []
        for _ in range(5):
            users = rng.integers(1, ML20M_USERS + 1, 1000).tolist()
            histories = [history() for _ in users]
            started = time.perf_counter()
            core.recommend(users, 10, histories=histories)
            thousand.append(time.perf_counter() - started)

        histories = UserHistories(
            torch.from_numpy(rng.integers(0, ML20M_MOVIES, (ML20M_USERS, args.max_history))),
            torch.from_numpy(rng.integers(1, args.max_history + 1, ML20M_USERS)),
        )
        assert index.history_tower is not None
        scorer = SequenceScorer(index.history_tower, histories, index.item_embeddings, index.temperature)
        users = np.arange(ML20M_USERS - 1_500, dtype=np.int64)  # about ML-20M's evaluated users
        task = EvaluationTask(
            split="test",
            users=users,
            targets=rng.integers(0, ML20M_MOVIES, len(users)),
            history=None,  # type: ignore[arg-type]  # unused by evaluate()
            seen=index.seen,
        )
        started = time.perf_counter()
        evaluate(scorer, task, recall_ks=(10, 50, 100), ndcg_ks=(10, 50), batch_size=1024, progress=False)
        evaluation_s = time.perf_counter() - started

    one.sort()
    result = {
        "one_user_p50_ms": round(statistics.median(one), 3),
        "one_user_p99_ms": round(one[int(0.99 * (len(one) - 1))], 3),
        "thousand_users_median_s": round(statistics.median(thousand), 3),
        "evaluation_users": len(users),
        "evaluation_s": round(evaluation_s, 1),
        "peak_rss_mb": round(peak_rss_mb()),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
