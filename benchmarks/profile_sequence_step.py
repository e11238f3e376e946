"""Where a training step of the sequence recipe goes at ML-20M scale, and what length-sorted batches buy.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_sequence_step.py [--zip PATH]
        [--batch-size 256] [--negatives mixed] [--sampled-negatives 2048] [--max-history 100]
        [--n-blocks 2] [--batches 300] [--rounds 2] [--processed-dir DIR]

The recipe's module and loader (label smoothing 0.2, earlier positives hidden, AdamW), on the
ML-20M-shaped synthetic data. One sample of ``--batches`` batches is trained through, step by
step, outside Lightning so that each phase can be timed: the tower's forward pass, the rest of the
loss, the backward pass, the optimizer step (ms per step, after 10 warm-up steps). Reported: the
phases, seconds per 2M target positions, and the padding ratio (positions the tower computes per
target: each batch's windows are right-padded to its longest).

The same sample is also cut into length-sorted batches (windows sorted by length within chunks
of 64 batches, then cut every ``--batch-size`` targets), alternating with the loader's batches
round by round: what bucketing by length would save. Timing only; the model keeps training
through both, so it is not a quality measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ensure_ml20m_shaped_zip, sequence_recipe_settings

WARMUP_STEPS = 10
SORTED_CHUNK_BATCHES = 64


def length_sorted_batches(columns, batch_size: int, sequences_per_batch: int) -> list:
    """``columns``: [2, n] (sequence, targets kept) in the sample's order -> batches of about
    ``batch_size`` targets, each of windows of similar length."""
    import torch

    batches = []
    chunk = SORTED_CHUNK_BATCHES * sequences_per_batch
    for start in range(0, columns.shape[1], chunk):
        part = columns[:, start : start + chunk]
        part = part[:, torch.argsort(part[1], descending=True, stable=True)]
        cumulative = torch.cumsum(part[1], 0)
        cuts = torch.searchsorted(
            cumulative, torch.arange(batch_size, int(cumulative[-1]), batch_size), right=True
        )
        batches += [piece for piece in torch.tensor_split(part, cuts.tolist(), dim=1) if piece.shape[1]]
    return batches


def timed_pass(module, optimizer, dataset, batches: list) -> dict[str, float]:
    """Train through ``batches`` ([2, b] columns); per-phase ms per step, s per 2M targets, padding."""
    phases = {"tower_forward_ms": 0.0, "rest_of_loss_ms": 0.0, "backward_ms": 0.0, "optimizer_ms": 0.0}
    targets = positions = steps = 0
    for index, columns in enumerate(batches):
        batch = dataset.__getitems__(columns)
        started = time.perf_counter()
        module.net.user_tower.encode(batch[0])  # the tower alone (its graph is dropped)
        tower_done = time.perf_counter()
        loss = module.training_step(batch, index)  # the tower again, then the loss
        forward_done = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        backward_done = time.perf_counter()
        optimizer.step()
        step_done = time.perf_counter()
        if index < WARMUP_STEPS:
            continue
        tower = tower_done - started
        phases["tower_forward_ms"] += tower
        phases["rest_of_loss_ms"] += forward_done - tower_done - tower
        phases["backward_ms"] += backward_done - forward_done
        phases["optimizer_ms"] += step_done - backward_done
        targets += int(batch[2].sum())
        positions += batch[2].numel()
        steps += 1
    step_seconds = sum(phases.values())
    return {
        **{name: round(1000 * seconds / steps, 2) for name, seconds in phases.items()},
        "targets_per_step": round(targets / steps, 1),
        "s_per_2m_targets": round(step_seconds / targets * 2_000_000, 1),
        "padding_ratio": round(positions / targets, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, default=None, help="default: the synthetic ML-20M-shaped zip")
    parser.add_argument("--processed-dir", type=Path, default=None, help="default: results/processed-20m")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--negatives", default="mixed", choices=["full", "mixed"])
    parser.add_argument("--sampled-negatives", type=int, default=2048)
    parser.add_argument("--max-history", type=int, default=100)
    parser.add_argument("--n-blocks", type=int, default=2, help="transformer blocks of the user tower")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import torch

    from two_tower_recsys.preprocessing.prepare import prepare_dataset
    from two_tower_recsys.settings import DataConfig, PathsConfig
    from two_tower_recsys.training.module import TwoTowerModule
    from two_tower_recsys.training.sequences import sequence_training
    from two_tower_recsys.utils.allocator import keep_freed_memory_for_reuse

    keep_freed_memory_for_reuse()  # as fit_two_tower does
    torch.manual_seed(0)
    zip_path = args.zip or ensure_ml20m_shaped_zip()
    processed = args.processed_dir or zip_path.parent / "processed-20m"
    dataset = prepare_dataset(
        DataConfig(name="custom"), PathsConfig(raw_zip=zip_path, processed_dir=processed), progress=False
    )
    model_cfg, trainer_cfg = sequence_recipe_settings(
        negatives=args.negatives,
        sampled_negatives=args.sampled_negatives,
        max_history=args.max_history,
        n_blocks=args.n_blocks,
        label_smoothing=0.2,
        hide_earlier_positives=True,
        batch_size=args.batch_size,
        max_targets=args.batches * args.batch_size,
    )
    sequences = sequence_training(dataset, model_cfg, trainer_cfg, seed=0)
    module = TwoTowerModule.from_settings(
        dataset.n_users, dataset.n_items, model_cfg, trainer_cfg, sequences.item_counts
    )
    module.log = lambda *args, **kwargs: None  # Lightning's logging needs a Trainer
    module.train()
    optimizer = module.configure_optimizers()
    sampler = sequences.loader.batch_sampler
    sampler.world = (0, 1)
    loader_batches = list(sampler)
    sorted_batches = length_sorted_batches(
        torch.cat(loader_batches, dim=1), args.batch_size, sampler.sequences_per_batch
    )
    passes: dict[str, list[dict]] = {"loader": [], "length_sorted": []}
    for _ in range(args.rounds):
        passes["loader"].append(timed_pass(module, optimizer, sequences.loader.dataset, loader_batches))
        passes["length_sorted"].append(
            timed_pass(module, optimizer, sequences.loader.dataset, sorted_batches)
        )
    for name, runs in passes.items():
        medians = {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}
        shape = {"n_blocks": args.n_blocks, "max_history": args.max_history}
        print(
            json.dumps({"batches": name, "threads": torch.get_num_threads(), **shape, **medians}), flush=True
        )
    ratios = [
        loader["s_per_2m_targets"] / ordered["s_per_2m_targets"]
        for loader, ordered in zip(passes["loader"], passes["length_sorted"], strict=True)
    ]
    print(f"length-sorted batches: {statistics.median(ratios):.2f}x the loader's speed (median of rounds)")


if __name__ == "__main__":
    main()
