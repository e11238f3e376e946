"""Fit time and peak memory of the classical baselines (EASE, ALS) at ML-20M scale.

    nice .venv/bin/python benchmarks/bench_baselines.py [--zip PATH] [--models ease,als]

The synthetic ML-20M-shaped dataset (``two-tower synth data=synthetic-20m``; generated here when
missing) is preprocessed once; each model is then fitted once, at one regularisation value, in a
fresh process, so its peak RSS is its own. Reported per model: the fit's wall time, peak RSS
before and after the fit, and the time to score one batch of users (what each validation or test
evaluation pays per batch). A grid search pays the fit once per value (EASE shares its Gram
matrix) and, for EASE, holds one more item-item matrix (the best weights so far).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ensure_ml20m_shaped_zip, peak_rss_mb, run_isolated


def prepare(zip_path: Path, processed_dir: Path):
    from two_tower_recsys.preprocessing.prepare import prepare_dataset
    from two_tower_recsys.settings import DataConfig, PathsConfig

    return prepare_dataset(
        DataConfig(name="custom"), PathsConfig(raw_zip=zip_path, processed_dir=processed_dir), progress=False
    )


def child(zip_path: Path, processed_dir: Path, model: str, value: float, batch_size: int) -> None:
    import torch

    from two_tower_recsys.models.als import fit_als
    from two_tower_recsys.models.ease import EaseScorer, ease_weights, gram_matrix
    from two_tower_recsys.models.interaction_matrix import interaction_matrix
    from two_tower_recsys.settings import EvalConfig

    dataset = prepare(zip_path, processed_dir)
    train = interaction_matrix(dataset.train, dataset.n_users, dataset.n_items)
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    timings = {}
    if model == "ease":
        gram = gram_matrix(train)
        timings["gram_s"] = time.perf_counter() - started
        weights = ease_weights(gram, value)
        del gram
        scorer = EaseScorer(weights, train)
    else:
        defaults = EvalConfig()
        scorer = fit_als(
            train,
            factors=defaults.als_factors,
            regularization=value,
            iterations=defaults.als_iterations,
            alpha=defaults.als_alpha,
            seed=0,
        )
    fit_s = time.perf_counter() - started
    rss_after_fit = peak_rss_mb()
    users = torch.arange(batch_size)
    started = time.perf_counter()
    scorer.score(users)
    score_batch_s = time.perf_counter() - started
    print(
        json.dumps(
            {
                "model": model,
                "value": value,
                "users": dataset.n_users,
                "items": dataset.n_items,
                "train_positives": int(train.nnz),
                "fit_s": fit_s,
                **timings,
                "score_batch_s": score_batch_s,
                "batch_size": batch_size,
                "threads": torch.get_num_threads(),
                "peak_rss_before_fit_mb": rss_before,
                "peak_rss_fit_mb": rss_after_fit,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, default=None, help="default: the synthetic ML-20M-shaped zip")
    parser.add_argument("--models", default="ease,als")
    parser.add_argument("--ease-l2", type=float, default=500.0)
    parser.add_argument("--als-regularization", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        zip_path, processed, model, value, batch_size = args.child
        child(Path(zip_path), Path(processed), model, float(value), int(batch_size))
        return
    zip_path = args.zip or ensure_ml20m_shaped_zip()
    with tempfile.TemporaryDirectory(prefix="bench-baselines-") as workdir:
        processed = Path(workdir) / "processed"
        prepare(zip_path, processed)  # once: the children load it
        script = Path(__file__).resolve()
        values = {"ease": args.ease_l2, "als": args.als_regularization}
        for model in args.models.split(","):
            result = run_isolated(
                script, [str(zip_path), str(processed), model, str(values[model]), str(args.batch_size)]
            )
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
