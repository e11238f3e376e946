"""``two-tower evaluate``: measure one model on validation and test with the shared evaluator.

``model=popularity`` evaluates the baseline alone; ``model=two_tower`` evaluates the trained
index in ``paths.artifacts_dir``. Results and their bootstrap intervals are added to
``metrics.json`` beside other models'. A paired difference needs both models' ranks from one
process, so this command writes none, and drops the entries naming the re-evaluated model (they
would no longer describe its metrics); ``two-tower train``, which evaluates both, writes them.
"""

from __future__ import annotations

from two_tower_recsys.artifacts.store import load_index
from two_tower_recsys.errors import ArtifactError
from two_tower_recsys.evaluation.report import METRICS_FILE, format_table, update_metrics_file
from two_tower_recsys.pipelines.evaluation_suite import (
    bootstrap_on_splits,
    evaluate_on_splits,
    evaluate_popularity,
    evaluate_scorer,
    evaluation_tasks,
    metrics_of,
)
from two_tower_recsys.pipelines.hydra_edge import hydra_entry
from two_tower_recsys.pipelines.trained_scorers import load_checkpoint_module, split_scorers
from two_tower_recsys.preprocessing.prepare import prepare_dataset
from two_tower_recsys.settings import AppConfig


def run(settings: AppConfig) -> None:
    dataset = prepare_dataset(settings.data, settings.paths, progress=settings.trainer.progress_bar)
    progress = settings.trainer.progress_bar
    if settings.model.name == "popularity":
        results = evaluate_popularity(
            evaluation_tasks(dataset), dataset.n_items, settings.eval, progress=progress
        )
    else:
        index = load_index(settings.paths.artifacts_dir)
        trained_on = index.manifest.get("dataset", {}).get("input_md5")
        if trained_on != dataset.stats["input_md5"] or index.n_items != dataset.n_items:
            raise ArtifactError(
                f"artifacts in {settings.paths.artifacts_dir} were trained on another dataset "
                f"({index.manifest.get('dataset', {}).get('name')}); train on data={settings.data.name} first"
            )
        if index.reads_histories:
            # The index's user vectors read every known positive, test included: score each
            # split from the checkpoint, over only the positives known before it.
            results = evaluate_on_splits(
                split_scorers(load_checkpoint_module(settings.paths.artifacts_dir), dataset),
                evaluation_tasks(dataset),
                settings.eval,
                progress=progress,
                label="two_tower",
            )
        else:
            results = evaluate_scorer(
                index.scorer(), evaluation_tasks(dataset), settings.eval, progress=progress, label="two_tower"
            )
    report = update_metrics_file(
        settings.paths.artifacts_dir / METRICS_FILE,
        dataset.stats,
        settings.model.name,
        metrics_of(results),
        bootstrap_on_splits({settings.model.name: results}, settings.eval),
    )
    print(format_table(report))


main = hydra_entry(run)

if __name__ == "__main__":
    main()
