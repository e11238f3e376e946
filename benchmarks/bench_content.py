"""Warm quality with and without content features in the movie tower, on validation.

    nice -n 10 .venv/bin/python benchmarks/bench_content.py --zip ../shared/data/ml-latest-small.zip \
        --seeds 0,1,2 --options id,content

Trains the real `two-tower train` pipeline once per option and seed (scratch directories under
``--workdir``), then ranks every validation user's held-out movie among the *trained* movies
(the movies the content model adds from the catalogue are left out, so both options rank the
same candidates) and prints each option's metrics per seed and averaged, and the seed-averaged
paired difference of each option against the first, with its bootstrap interval over users.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seed_average import seed_averaged_difference

from two_tower_recsys.artifacts.store import load_index
from two_tower_recsys.evaluation.bootstrap import BootstrapSettings
from two_tower_recsys.evaluation.evaluator import evaluate, evaluation_task
from two_tower_recsys.preprocessing.processed import load_processed
from two_tower_recsys.preprocessing.split import VAL
from two_tower_recsys.retrieval.scorers import EmbeddingScorer

OPTIONS = {
    "id": ["model.item_features=[id]"],
    "content": ["model.item_features=[id,genres,year,title]"],
    "genres": ["model.item_features=[id,genres]"],
    "year": ["model.item_features=[id,year]"],
    "title": ["model.item_features=[id,title]"],
    "content_only": ["model.item_features=[genres,year,title]"],
    "tags": ["model.item_features=[id,tags]"],
    "content_tags": ["model.item_features=[id,genres,year,title,tags]"],
}
METRICS = ("recall@10", "recall@50", "recall@100", "ndcg@10", "ndcg@50")


def train(workdir: Path, zip_path: Path, data: str, option: str, seed: int) -> Path:
    run = workdir / f"{option}-seed{seed}"
    artifacts = run / "artifacts"
    if (artifacts / "manifest.json").exists():
        return artifacts  # already trained: the benchmark resumes where it stopped
    command = [
        str(Path(sys.executable).with_name("two-tower")),
        "train",
        f"data={data}",
        f"paths.raw_zip={zip_path.resolve()}",
        f"paths.processed_dir={workdir / 'processed'}",
        f"paths.artifacts_dir={artifacts}",
        f"paths.plots_dir={run / 'plots'}",
        "logging.enabled=false",
        "trainer.progress_bar=false",
        f"seed={seed}",
        *OPTIONS[option],
    ]
    run.mkdir(parents=True, exist_ok=True)
    with (run / "train.log").open("w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=run)
    return artifacts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--zip", type=Path, required=True)
    parser.add_argument("--data", default="ml-latest-small")
    parser.add_argument("--options", default="id,content", help=f"comma-separated, from {', '.join(OPTIONS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workdir", type=Path, default=Path("bench_content_runs"))
    args = parser.parse_args()
    options, seeds = args.options.split(","), [int(seed) for seed in args.seeds.split(",")]
    workdir = args.workdir.resolve()
    artifacts = {(o, s): train(workdir, args.zip, args.data, o, s) for s in seeds for o in options}
    dataset = load_processed(workdir / "processed")
    task = evaluation_task(dataset, VAL)
    ranks: dict[str, list[np.ndarray]] = {option: [] for option in options}
    for (option, _seed), directory in artifacts.items():
        index = load_index(directory)
        scorer = EmbeddingScorer(
            index.user_embeddings, index.item_embeddings[: dataset.n_items], index.temperature
        )
        result = evaluate(scorer, task, progress=False)
        ranks[option].append(result.ranks)
        print(f"{option:>12} seed {_seed}: " + "  ".join(f"{m} {result.metrics[m]:.4f}" for m in METRICS))
    settings = BootstrapSettings(n_resamples=1000, seed=0, confidence=0.95)
    first = options[0]
    print(f"\nvalidation, {task.split}: {len(ranks[first][0])} users, mean over seeds {seeds}")
    for option in options:
        for other in options[:1]:
            if option == other:
                continue
            differences = seed_averaged_difference(ranks[option], ranks[other], METRICS, settings)
            for name, difference in differences.items():
                low, high = difference.interval
                print(f"  {option} - {other} {name}: {difference.diff:+.4f} [{low:+.4f}, {high:+.4f}]")


if __name__ == "__main__":
    main()
