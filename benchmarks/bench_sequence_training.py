"""Training throughput of the sequence user tower at ML-20M scale: one epoch of 2M target positions.

    .venv/bin/python benchmarks/bench_sequence_training.py [--zip PATH] [--negatives in_batch]
        [--targets 2000000] [--batch-size 2048] [--max-history 50]
        [--label-smoothing 0.1 --hide-earlier-positives]   # the recipe's full-softmax options
        [--sampled-negatives 2048]                          # the pool of --negatives mixed
        [--accelerator cpu] [--processed-dir DIR] [--compile]
        [--devices 2]                                       # DDP on CPU processes (gloo)
        [--n-blocks 2]                                      # the tower's transformer blocks

One epoch through the real LightningModule, sequence loader and Trainer, in a fresh process
(validation off: bench_evaluation.py times evaluation). Reported: epoch wall time, target
positions per second and peak RSS. Target (issue #8): <= 60 s per 2M-target epoch on the 2-core machine.
With ``--accelerator gpu`` the JSON line also says where the module and batches were, the peak
device memory and a steady-state rate (see common.device_report_callback). With ``--devices N``
(CPU only) the epoch runs under DDP on N processes, each with ``--batch-size`` targets per step
(N times as many per step in all); the JSON line adds the steady-state step time (from batch 20,
after the workers have started) and the 2M-target epoch it implies (given for one process too).
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
    sequence_recipe_settings,
    trainer_device_kwargs,
)

STEADY_FROM_BATCH = 20


def steady_clock():
    """A callback timing batches ``STEADY_FROM_BATCH`` onwards to the epoch's end."""
    import lightning as L

    class _SteadyClock(L.Callback):
        def __init__(self) -> None:
            self.started, self.seconds, self.steps = 0.0, 0.0, 0

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            if batch_idx == STEADY_FROM_BATCH:
                self.started = time.perf_counter()

        def on_train_epoch_end(self, trainer, module) -> None:
            if trainer.num_training_batches > STEADY_FROM_BATCH:
                self.seconds = time.perf_counter() - self.started
                self.steps = trainer.num_training_batches - STEADY_FROM_BATCH

    return _SteadyClock()


def child(zip_path: Path, processed_dir: Path, args: argparse.Namespace) -> None:
    import lightning as L

    from two_tower_recsys.preprocessing.prepare import prepare_dataset
    from two_tower_recsys.settings import DataConfig, PathsConfig
    from two_tower_recsys.training.module import TwoTowerModule
    from two_tower_recsys.training.sequences import sequence_training
    from two_tower_recsys.utils.allocator import keep_freed_memory_for_reuse

    keep_freed_memory_for_reuse()
    dataset = prepare_dataset(
        DataConfig(name="custom"), PathsConfig(raw_zip=zip_path, processed_dir=processed_dir), progress=False
    )
    model_cfg, trainer_cfg = sequence_recipe_settings(
        negatives=args.negatives,
        sampled_negatives=args.sampled_negatives,
        max_history=args.max_history,
        n_blocks=args.n_blocks,
        label_smoothing=args.label_smoothing,
        hide_earlier_positives=args.hide_earlier_positives,
        batch_size=args.batch_size,
        max_targets=args.targets,
    )
    sequences = sequence_training(dataset, model_cfg, trainer_cfg, seed=0)
    module = TwoTowerModule.from_settings(
        dataset.n_users, dataset.n_items, model_cfg, trainer_cfg, sequences.item_counts
    )
    if args.compile:  # measured and rejected (docs/benchmarks.md): slower on this CPU
        import torch

        module.net.user_tower.encode = torch.compile(module.net.user_tower.encode)
    report = None if args.accelerator == "cpu" else device_report_callback()
    steady = steady_clock()
    devices = trainer_device_kwargs(args.accelerator)
    if args.devices > 1:
        devices = {"accelerator": "cpu", "devices": args.devices, "strategy": "ddp"}
    trainer = L.Trainer(
        max_epochs=1,
        **devices,
        callbacks=[steady, *([report] if report is not None else [])],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        use_distributed_sampler=False,
    )
    rss_before = peak_rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    trainer.fit(module, train_dataloaders=sequences.loader)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    if trainer.global_rank != 0:
        return  # the workers' figures are rank 0's
    targets = min(args.targets, int(sequences.loader.dataset.n_targets.sum()))
    extra = {}
    if steady.steps:
        step_s = steady.seconds / steady.steps
        extra["steady_step_ms"] = 1000 * step_s
        targets_per_step = targets / len(sequences.loader)  # of all processes together
        extra["steady_epoch_s_per_2m"] = step_s * 2_000_000 / targets_per_step
    if report is not None:
        extra = {**extra, **accelerator_summary(args.accelerator), **report.info}
        if "steady_s" in report.info:  # batches hold about the same number of targets
            steady = targets * report.info["steady_batches"] / len(sequences.loader)
            extra["steady_targets_per_s"] = steady / report.info["steady_s"]
    print(
        json.dumps(
            {
                "negatives": args.negatives,
                "compiled": args.compile,
                "devices": args.devices,
                "sampled_negatives": args.sampled_negatives if args.negatives == "mixed" else None,
                "batch_size": args.batch_size,
                "label_smoothing": args.label_smoothing,
                "hide_earlier_positives": args.hide_earlier_positives,
                "epoch_s": seconds,
                "epoch_cpu_s": cpu_seconds,  # all threads: a busy machine inflates epoch_s, not this
                "targets": targets,
                "targets_per_s": targets / seconds,
                "batches": len(sequences.loader),
                "peak_rss_mb": peak_rss_mb(),
                "peak_rss_before_training_mb": rss_before,
                "users": dataset.n_users,
                "items": dataset.n_items,
                **extra,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, default=None, help="default: the synthetic ML-20M-shaped zip")
    parser.add_argument("--negatives", default="in_batch", choices=["in_batch", "full", "mixed"])
    parser.add_argument("--sampled-negatives", type=int, default=2048, help="the pool of --negatives mixed")
    parser.add_argument("--targets", type=int, default=2_000_000)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--max-history", type=int, default=50)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--hide-earlier-positives", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the user tower's encoder")
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator (cpu, gpu, ...)")
    parser.add_argument("--devices", type=int, default=1, help="DDP on this many CPU processes")
    parser.add_argument("--n-blocks", type=int, default=2, help="transformer blocks of the user tower")
    parser.add_argument("--processed-dir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--child", nargs=2, metavar=("ZIP", "PROCESSED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), args)
        return
    zip_path = args.zip or ensure_ml20m_shaped_zip()
    with tempfile.TemporaryDirectory() as temporary:
        processed_dir = str(args.processed_dir or temporary)
        options = ["--negatives", args.negatives, "--targets", str(args.targets)]
        options += ["--sampled-negatives", str(args.sampled_negatives)]
        options += ["--batch-size", str(args.batch_size), "--max-history", str(args.max_history)]
        options += ["--label-smoothing", str(args.label_smoothing)]
        options += ["--hide-earlier-positives"] if args.hide_earlier_positives else []
        options += [] if args.accelerator == "cpu" else ["--accelerator", args.accelerator]
        options += ["--devices", str(args.devices), "--n-blocks", str(args.n_blocks)]
        run = run_isolated(Path(__file__), [str(zip_path), processed_dir, *options])
        if args.accelerator != "cpu":
            print(json.dumps(run), flush=True)
        pool = args.sampled_negatives if args.negatives == "mixed" else 0
        print(
            f"sequence {args.negatives:9s} pool {pool:5d} "
            f"batch {args.batch_size:5d} smoothing {args.label_smoothing} hide "
            f"{args.hide_earlier_positives!s:5s}{' compiled' if args.compile else ''} "
            f"{f'ddp x{args.devices} ' if args.devices > 1 else ''}"
            f"{f'{args.n_blocks} blocks ' if args.n_blocks != 2 else ''}"
            f"epoch {run['epoch_s']:7.1f} s "
            f"({run['epoch_cpu_s']:.1f} CPU s)  {run['targets_per_s']:9.0f} "
            f"targets/s  {run['batches']} batches  peak RSS {run['peak_rss_mb']:.0f} MB"
            + (
                f"  steady {run['steady_step_ms']:.1f} ms/step, {run['steady_epoch_s_per_2m']:.0f} s per 2M"
                if "steady_step_ms" in run
                else ""
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
