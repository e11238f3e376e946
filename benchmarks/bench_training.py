"""Training throughput at ML-20M scale: one epoch of 2M positive pairs, batch 4096.

    .venv/bin/python benchmarks/bench_training.py [--zip PATH] [--configs in_batch:lazy_adam,full:lazy_adam]
        [--pairs 2000000] [--batch-size 4096] [--accelerator cpu] [--processed-dir DIR]

Each configuration (negatives:optimizer) trains one epoch through the real LightningModule and
Trainer in a fresh process (validation off: it is timed by bench_evaluation.py). Reported:
epoch wall time, positive pairs per second, peak RSS.
Targets (issue #3): in-batch epoch <= 60 s; full-softmax epoch <= 5 min, on the 2-core machine.
With ``--accelerator gpu`` the JSON line also says where the module and batches were, the peak
device memory and a steady-state rate after 20 warm-up batches (common.device_report_callback).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    accelerator_summary,
    device_report_callback,
    ensure_ml20m_shaped_zip,
    peak_rss_mb,
    run_isolated,
    trainer_device_kwargs,
)

DEFAULT_CONFIGS = "in_batch:lazy_adam,in_batch:adam,full:lazy_adam,full:adam"


def child(
    zip_path: Path,
    processed_dir: Path,
    negatives: str,
    optimizer: str,
    pairs: int,
    batch_size: int,
    accelerator: str = "cpu",
) -> None:
    import lightning as L

    from two_tower_recsys.models.popularity import popularity_counts
    from two_tower_recsys.preprocessing.prepare import prepare_dataset
    from two_tower_recsys.settings import DataConfig, ModelConfig, PathsConfig, TrainerConfig
    from two_tower_recsys.training.module import TwoTowerModule
    from two_tower_recsys.training.pairs import epoch_pairs_loader
    from two_tower_recsys.utils.allocator import keep_freed_memory_for_reuse

    keep_freed_memory_for_reuse()
    dataset = prepare_dataset(
        DataConfig(name="custom"), PathsConfig(raw_zip=zip_path, processed_dir=processed_dir), progress=False
    )
    trainer_cfg = TrainerConfig(
        optimizer=optimizer, batch_size=batch_size, max_interactions=pairs, max_epochs=1
    )
    module = TwoTowerModule.from_settings(
        dataset.n_users,
        dataset.n_items,
        ModelConfig(negatives=negatives),
        trainer_cfg,
        popularity_counts(dataset.train, dataset.n_items),
    )
    train = dataset.train
    loader = epoch_pairs_loader(
        train["user_idx"].to_numpy(),
        train["item_idx"].to_numpy(),
        max_pairs=pairs,
        batch_size=batch_size,
        seed=0,
    )
    report = None if accelerator == "cpu" else device_report_callback()
    trainer = L.Trainer(
        max_epochs=1,
        **trainer_device_kwargs(accelerator),
        callbacks=[report] if report is not None else None,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    seconds = time.perf_counter() - started
    extra = {}
    if report is not None:
        extra = {**accelerator_summary(accelerator), **report.info}
        if "steady_s" in report.info:
            extra["steady_pairs_per_s"] = report.info["steady_batches"] * batch_size / report.info["steady_s"]
    print(
        json.dumps(
            {
                "negatives": negatives,
                "optimizer": optimizer,
                "epoch_s": seconds,
                "pairs": len(loader.batch_sampler) * batch_size if pairs >= batch_size else pairs,
                "pairs_per_s": min(pairs, train.height) / seconds,
                "peak_rss_mb": peak_rss_mb(),
                "peak_rss_before_training_mb": rss_before,
                "users": dataset.n_users,
                "items": dataset.n_items,
                "train_pairs": train.height,
                **extra,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, default=None, help="default: the synthetic ML-20M-shaped zip")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated negatives:optimizer")
    parser.add_argument("--pairs", type=int, default=2_000_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator (cpu, gpu, ...)")
    parser.add_argument("--processed-dir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument(
        "--child", nargs=4, metavar=("ZIP", "PROCESSED", "NEGATIVES", "OPTIMIZER"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        zip_path, processed, negatives, optimizer = args.child
        child(
            Path(zip_path), Path(processed), negatives, optimizer, args.pairs, args.batch_size,
            args.accelerator,
        )  # fmt: skip
        return
    zip_path = args.zip or ensure_ml20m_shaped_zip()
    device_options = [] if args.accelerator == "cpu" else ["--accelerator", args.accelerator]
    with tempfile.TemporaryDirectory() as temporary:
        processed_dir = str(args.processed_dir or temporary)
        for config in args.configs.split(","):
            negatives, optimizer = config.split(":")
            run = run_isolated(
                Path(__file__),
                [str(zip_path), processed_dir, negatives, optimizer, "--pairs", str(args.pairs),
                 "--batch-size", str(args.batch_size), *device_options],
            )  # fmt: skip
            if device_options:
                print(json.dumps(run), flush=True)
            print(
                f"{negatives:9s} {optimizer:10s} epoch {run['epoch_s']:7.1f} s  "
                f"{run['pairs_per_s']:9.0f} pairs/s  peak RSS {run['peak_rss_mb']:.0f} MB",
                flush=True,
            )


if __name__ == "__main__":
    main()
