"""The ID and the sequence user towers side by side: metrics with intervals, their paired difference,
and the users whose validation and test movies share a timestamp.

    .venv/bin/python benchmarks/bench_tower_comparison.py --zip ../shared/data/ml-latest-small.zip \\
        --seeds 0,1,2 [--towers id,sequence] [--out benchmarks/results/towers] \\
        [--sequence-override model.max_history=100 ...]

Per seed, each tower is trained by the real `two-tower train` in a scratch directory, then its
best checkpoint is rescored on validation and test by the one evaluator (a sequence tower reads
only what precedes each split), so both towers' per-user ranks are in one process. One JSON line
per seed and split with, for all users and for the two groups "shared" (the user's validation and
test movies carry the same timestamp: a bulk rating session) and "other":
- every metric of both towers with its percentile-bootstrap interval (eval.bootstrap_* settings);
- the paired difference sequence - id over the same resampled users, with its interval.
The last line averages the point values over seeds and gives the seed-averaged difference's paired
interval (each user's value averaged over the seeds, then users resampled). The test split is read
here: run it once the configuration was chosen on validation. Each run's ranks are kept in
``--out`` (one file per tower and seed) and reused when present, so the towers can be trained by
separate invocations (``--towers id`` and ``--towers sequence`` side by side) and compared by a
last one. ``--finished TOWER=ARTIFACTS_DIR`` ranks a run trained earlier by ``two-tower train``
instead of training it (one seed; refused unless its manifest's data, model and trainer settings
and seed are the ones this command would train with), e.g. the two whole ML-20M-shaped jobs:

    .venv/bin/python benchmarks/bench_tower_comparison.py --data synthetic-20m \\
        --zip benchmarks/results/synthetic-20m.zip --seeds 42 --towers none \\
        --sequence-override model.negatives=mixed \\
        --finished id=ID_RUN/artifacts --finished sequence=RECIPE_RUN/artifacts
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

TOWERS = ("id", "sequence")
# The sequence tower's configuration; the ID tower runs with the defaults.
SEQUENCE = ["experiment=sequence"]  # configs/experiment/sequence.yaml: the recipe
GROUPS = ("all", "shared", "other")


def train_and_rank(overrides: list[str], scratch: Path) -> tuple[dict[str, np.ndarray], dict, dict]:
    """Train in ``scratch``; (ranks per split, the split's tasks' shared-timestamp masks, run info)."""
    from two_tower_recsys.pipelines import train_pipeline
    from two_tower_recsys.pipelines.hydra_edge import compose_settings

    with contextlib.chdir(scratch):  # back afterwards: the scratch directory is then removed
        settings = compose_settings(overrides)
        started = time.perf_counter()
        train_pipeline.run(settings)
        seconds = time.perf_counter() - started
        ranks, masks, info = rank_finished(settings)
    return ranks, masks, info | {"seconds": round(seconds, 1)}


def rank_finished(settings, manifest: dict | None = None) -> tuple[dict[str, np.ndarray], dict, dict]:
    """The best checkpoint in ``settings.paths.artifacts_dir`` rescored on validation and test."""
    from two_tower_recsys.artifacts.store import verified_manifest
    from two_tower_recsys.pipelines.evaluation_suite import evaluate_on_splits, evaluation_tasks
    from two_tower_recsys.pipelines.trained_scorers import load_checkpoint_module, split_scorers
    from two_tower_recsys.preprocessing.prepare import prepare_dataset

    manifest = manifest or verified_manifest(settings.paths.artifacts_dir)
    dataset = prepare_dataset(settings.data, settings.paths, progress=False)
    tasks = evaluation_tasks(dataset)
    module = load_checkpoint_module(settings.paths.artifacts_dir)
    results = evaluate_on_splits(
        split_scorers(module, dataset), tasks, settings.eval, progress=False, label="rescore"
    )
    shared = shared_timestamp_users(dataset)
    masks = {split: shared[task.users] for split, task in tasks.items()}
    ranks = {split: result.ranks for split, result in results.items()}
    return ranks, masks, {"best_epoch": manifest["best_epoch"]}


def rank_finished_run(overrides: list[str], artifacts_dir: Path, scratch: Path):
    """A run trained earlier (``two-tower train`` with ``overrides``) ranked from its artifacts,
    refused when its manifest's data, model or trainer settings or seed differ from ``overrides``'."""
    from two_tower_recsys.artifacts.store import verified_manifest
    from two_tower_recsys.errors import ArtifactError
    from two_tower_recsys.pipelines.hydra_edge import compose_settings

    try:
        manifest = verified_manifest(artifacts_dir)
    except ArtifactError as exc:
        raise SystemExit(f"--finished: {exc}") from None
    recorded = manifest["config"]
    with contextlib.chdir(scratch):
        settings = compose_settings([*overrides, f"paths.artifacts_dir={artifacts_dir}"])
        for part in ("data", "model", "trainer"):
            # as the manifest stores them (JSON); a progress bar does not change what was trained
            wanted = json.loads(json.dumps(asdict(getattr(settings, part)), default=str))
            differing = sorted(
                key
                for key in wanted.keys() | recorded[part].keys()
                if key != "progress_bar" and wanted.get(key) != recorded[part].get(key)
            )
            if differing:
                raise SystemExit(f"{artifacts_dir} was trained with other {part} settings: {differing}")
        if recorded["seed"] != settings.seed:
            raise SystemExit(f"{artifacts_dir} was trained with seed {recorded['seed']}, not {settings.seed}")
        return rank_finished(settings, manifest)


def shared_timestamp_users(dataset) -> np.ndarray:
    """Per user index: True where the validation and the test movie carry the same timestamp."""
    shared = np.zeros(dataset.n_users, dtype=bool)
    val = dataset.val.select("user_idx", "timestamp")
    both = val.join(dataset.test.select("user_idx", "timestamp"), on="user_idx", suffix="_test")
    same = both.filter(both["timestamp"] == both["timestamp_test"]).get_column("user_idx").to_numpy()
    shared[same] = True
    return shared


def compare(ranks: dict[str, np.ndarray], eval_settings) -> dict:
    from two_tower_recsys.evaluation.bootstrap import BootstrapSettings, bootstrap_metrics, pair_name
    from two_tower_recsys.evaluation.metrics import summarize

    names = list(summarize(ranks["id"], eval_settings.recall_ks, eval_settings.ndcg_ks))
    settings = BootstrapSettings(
        eval_settings.bootstrap_resamples, eval_settings.bootstrap_seed, eval_settings.confidence
    )
    bootstrap = bootstrap_metrics(ranks, names, settings, pairs=[("sequence", "id")])
    out = {"users": len(ranks["id"])}
    for tower in TOWERS:
        metrics = summarize(ranks[tower], eval_settings.recall_ks, eval_settings.ndcg_ks)
        out[tower] = {
            name: [round(metrics[name], 4), *(round(b, 4) for b in bootstrap.intervals[tower][name])]
            for name in names
        }
    out["sequence-id"] = {
        name: [round(d.diff, 4), *(round(b, 4) for b in d.interval)]
        for name, d in bootstrap.paired[pair_name("sequence", "id")].items()
    }
    return out


def configuration_digest(overrides: list[str]) -> str:
    """The resolved data, model and trainer settings' digest, in each kept file's name: a changed
    configuration (an edited experiment file too, not only other overrides) never reuses ranks."""
    from two_tower_recsys.pipelines.hydra_edge import compose_settings

    settings = compose_settings(overrides)
    resolved = [asdict(settings.data), asdict(settings.model), asdict(settings.trainer)]
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:8]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, required=True)
    parser.add_argument("--data", default="ml-latest-small")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sequence-override", action="append", default=[])
    parser.add_argument("--id-override", action="append", default=[])
    parser.add_argument("--towers", default="id,sequence", help="train these (the others must be in --out)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/towers"))
    parser.add_argument(
        "--finished",
        action="append",
        default=[],
        metavar="TOWER=ARTIFACTS_DIR",
        help="rank this tower from a run trained earlier with the same settings (one seed)",
    )
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")

    from two_tower_recsys.pipelines.hydra_edge import compose_settings

    zip_path = args.zip.resolve()
    finished = {tower: Path(d).resolve() for tower, _, d in (f.partition("=") for f in args.finished)}
    if unknown := set(finished) - set(TOWERS):
        parser.error(f"--finished: unknown tower {sorted(unknown)}; choose from {TOWERS}")
    tower_overrides = {"id": args.id_override, "sequence": [*SEQUENCE, *args.sequence_override]}
    eval_settings = compose_settings([]).eval
    lines = []
    by_seed: dict[tuple[str, str, str], list[np.ndarray]] = {}  # (split, group, tower) -> ranks per seed
    for seed in (int(seed) for seed in args.seeds.split(",")):
        common = [f"data={args.data}", f"paths.raw_zip={zip_path}", "logging.enabled=false"]
        common += ["trainer.progress_bar=false", f"seed={seed}"]
        ranks, info = {}, {}
        for tower in TOWERS:
            digest = configuration_digest([*common, *tower_overrides[tower]])
            kept = args.out / f"ranks_{tower}_{digest}_seed{seed}.npz"
            if not kept.exists() and tower in finished:
                with tempfile.TemporaryDirectory() as scratch:
                    split_ranks, masks, run = rank_finished_run(
                        [*common, *tower_overrides[tower]], finished[tower], Path(scratch)
                    )
                keep(kept, split_ranks, masks, run)
            if not kept.exists() and tower in args.towers.split(","):
                with tempfile.TemporaryDirectory() as scratch:
                    split_ranks, masks, run = train_and_rank(
                        [*common, *tower_overrides[tower]], Path(scratch)
                    )
                keep(kept, split_ranks, masks, run)
            if not kept.exists():
                continue
            stored = np.load(kept)
            ranks[tower] = {split: stored[f"ranks_{split}"] for split in ("val", "test")}
            masks = {split: stored[f"shared_{split}"] for split in ("val", "test")}
            info[tower] = json.loads(str(stored["run"]))
        if len(ranks) < len(TOWERS):
            print(
                f"seed {seed}: trained {sorted(ranks)}; the other tower is not in {args.out} yet", flush=True
            )
            continue
        for split in ("val", "test"):
            selections = {"all": slice(None), "shared": masks[split], "other": ~masks[split]}
            line = {"seed": seed, "split": split, "runs": info}
            for group in GROUPS:
                chosen = {tower: ranks[tower][split][selections[group]] for tower in TOWERS}
                line[group] = compare(chosen, eval_settings)
                for tower in TOWERS:
                    by_seed.setdefault((split, group, tower), []).append(chosen[tower])
            lines.append(line)
            print(json.dumps(line), flush=True)
    if not lines:
        return
    summary = {"mean_over_seeds": sorted({line["seed"] for line in lines})}
    for split in ("val", "test"):
        of_split = [line for line in lines if line["split"] == split]
        summary[split] = {
            group: {
                key: {
                    name: round(statistics.mean(line[group][key][name][0] for line in of_split), 4)
                    for name in of_split[0][group][key]
                }
                for key in (*TOWERS, "sequence-id")
            }
            for group in GROUPS
        }
    summary["seed_averaged_sequence-id"] = seed_averaged(by_seed, eval_settings)
    print(json.dumps(summary), flush=True)


def keep(path: Path, split_ranks: dict, masks: dict, run: dict) -> None:
    arrays = {f"ranks_{s}": r for s, r in split_ranks.items()}
    arrays |= {f"shared_{s}": m for s, m in masks.items()}
    np.savez(path, run=json.dumps(run), **arrays)


def seed_averaged(by_seed: dict[tuple[str, str, str], list[np.ndarray]], eval_settings) -> dict:
    """Per split and group: the seed-averaged ``sequence - id`` of every metric with its paired
    interval over users (each user's value averaged over the seeds first): the interval of the
    figure the mean-over-seeds rows report."""
    from seed_average import seed_averaged_difference

    from two_tower_recsys.evaluation.bootstrap import BootstrapSettings
    from two_tower_recsys.evaluation.metrics import summarize

    settings = BootstrapSettings(
        eval_settings.bootstrap_resamples, eval_settings.bootstrap_seed, eval_settings.confidence
    )
    out: dict = {}
    for split, group, _ in by_seed:
        if group in out.setdefault(split, {}):
            continue
        sequence, ids = by_seed[(split, group, "sequence")], by_seed[(split, group, "id")]
        names = list(summarize(ids[0], eval_settings.recall_ks, eval_settings.ndcg_ks))
        out[split][group] = {
            name: [round(d.diff, 4), *(round(b, 4) for b in d.interval)]
            for name, d in seed_averaged_difference(sequence, ids, names, settings).items()
        }
    return out


if __name__ == "__main__":
    main()
