"""The cost of the bootstrap intervals at ML-20M scale (issue #7: a few seconds at most).

    .venv/bin/python benchmarks/bench_intervals.py [--users 137000] [--repeats 3]

Per-user ranks of two models over a 27k-movie catalogue stand in for the evaluator's output
(two-tower Recall@50 ~0.38, popularity ~0.19, drawn independently: more distinct rank pairs,
so more groups, than two real, correlated models give). Timed, as the train pipeline runs them:
- ``popularity_s``: popularity's intervals alone on validation and test (written before training);
- ``final_s``: both models' intervals and the paired two-tower - popularity differences on
  validation and test (5 metrics each), 1000 resamples;
- ``bands_s``: the two 95% bands of the Recall@K plot (K = 1..200, test).
``total_cpu_s`` is the CPU time of all three, less sensitive than wall time to other jobs on
a shared machine. Also reported: the peak memory numpy allocated during ``final``
(tracemalloc), and, with ``--index-draws``, one pass of the textbook method (draw every user
index of every resample, bincount, matrix product) on one split, for comparison. Reported:
medians over the repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc

import numpy as np

from two_tower_recsys.evaluation.bootstrap import BootstrapSettings, recall_curve_band
from two_tower_recsys.evaluation.evaluator import EvaluationResult
from two_tower_recsys.evaluation.metrics import per_user_values, summarize
from two_tower_recsys.pipelines.evaluation_suite import bootstrap_on_splits
from two_tower_recsys.settings import EvalConfig

CATALOGUE = 27_000
NAMES = ["recall@10", "recall@50", "recall@100", "ndcg@10", "ndcg@50"]


def geometric_ranks(rng: np.random.Generator, n_users: int, recall_at_50: float) -> np.ndarray:
    p = 1.0 - (1.0 - recall_at_50) ** (1.0 / 50)  # P(rank < 50) = recall_at_50
    return np.minimum(rng.geometric(p, n_users) - 1, CATALOGUE - 1)


def results(n_users: int, seed: int) -> dict[str, dict[str, EvaluationResult]]:
    rng = np.random.default_rng(seed)
    by_model = {}
    for model, recall in (("two_tower", 0.38), ("popularity", 0.19)):
        by_model[model] = {}
        for split in ("val", "test"):
            ranks = geometric_ranks(rng, n_users, recall)
            by_model[model][split] = EvaluationResult(split, ranks, summarize(ranks, (10, 50, 100), (10, 50)))
    return by_model


def index_draw_pass(ranks_a: np.ndarray, ranks_b: np.ndarray, settings: BootstrapSettings) -> None:
    """The per-user-draw bootstrap the grouped one replaces, bounded to ~100 MB per chunk."""
    values = np.concatenate([per_user_values(ranks_a, NAMES), per_user_values(ranks_b, NAMES)], axis=1)
    n_users = len(values)
    rng = np.random.default_rng(settings.seed)
    per_chunk = max(1, 4_000_000 // n_users)
    for start in range(0, settings.n_resamples, per_chunk):
        rows = min(per_chunk, settings.n_resamples - start)
        draws = rng.integers(0, n_users, size=(rows, n_users), dtype=np.int32)
        flat = np.add(draws, np.arange(rows, dtype=np.int64)[:, None] * n_users, dtype=np.int64).ravel()
        counts = np.bincount(flat, minlength=rows * n_users).reshape(rows, n_users)
        _ = counts @ values


def one_run(by_model: dict[str, dict[str, EvaluationResult]], eval_cfg: EvalConfig) -> dict[str, float]:
    cpu_started = time.process_time()  # this process's CPU seconds: less noisy on a shared machine
    started = time.perf_counter()
    bootstrap_on_splits({"popularity": by_model["popularity"]}, eval_cfg)
    popularity_s = time.perf_counter() - started

    tracemalloc.start()
    started = time.perf_counter()
    final = bootstrap_on_splits(by_model, eval_cfg, pairs=(("two_tower", "popularity"),))
    final_s = time.perf_counter() - started
    peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()

    started = time.perf_counter()
    for results_by_split in by_model.values():
        recall_curve_band(results_by_split["test"].ranks, 200, final["test"].settings)
    bands_s = time.perf_counter() - started
    return {
        "total_cpu_s": time.process_time() - cpu_started,
        "popularity_s": popularity_s,
        "final_s": final_s,
        "bands_s": bands_s,
        "total_s": popularity_s + final_s + bands_s,
        "final_peak_numpy_mb": peak_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=137_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--index-draws", action="store_true", help="also time the per-user-draw method once")
    args = parser.parse_args()
    eval_cfg = EvalConfig()
    runs = [one_run(results(args.users, seed=repeat), eval_cfg) for repeat in range(args.repeats)]
    summary = {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}
    summary.update(users=args.users, resamples=eval_cfg.bootstrap_resamples, repeats=args.repeats)
    if args.index_draws:
        by_model = results(args.users, seed=0)
        started = time.perf_counter()
        index_draw_pass(
            by_model["two_tower"]["test"].ranks,
            by_model["popularity"]["test"].ranks,
            BootstrapSettings(eval_cfg.bootstrap_resamples, eval_cfg.bootstrap_seed, eval_cfg.confidence),
        )
        summary["index_draws_one_split_s"] = round(time.perf_counter() - started, 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
