"""``two-tower evaluate``: measure models on validation and test with the shared evaluator.

``model=popularity|ease|als`` evaluates that baseline alone; ``model=two_tower`` evaluates the
trained index in ``paths.artifacts_dir`` beside the baselines of ``eval.baselines`` (fitted again
here), with the paired difference of the two-tower against each. Results, intervals, the
beyond-accuracy metrics and results by segment are added to ``metrics.json`` beside other
models'; a model re-evaluated alone loses the paired entries naming it (they would no longer
describe its metrics).
"""

from __future__ import annotations

import logging

from two_tower_recsys.artifacts.store import load_index
from two_tower_recsys.errors import ArtifactError
from two_tower_recsys.evaluation.report import format_table
from two_tower_recsys.pipelines.baselines import evaluate_baselines
from two_tower_recsys.pipelines.evaluation_suite import evaluate_on_splits, evaluate_scorer, evaluation_tasks
from two_tower_recsys.pipelines.hydra_edge import hydra_entry
from two_tower_recsys.pipelines.model_report import (
    refit_records,
    results_of,
    tunings,
    write_comparison_plots,
    write_model_report,
)
from two_tower_recsys.pipelines.trained_scorers import load_checkpoint_module, split_scorers
from two_tower_recsys.preprocessing.prepare import prepare_dataset
from two_tower_recsys.settings import BASELINES, AppConfig

log = logging.getLogger(__name__)


def run(settings: AppConfig) -> None:
    dataset = prepare_dataset(settings.data, settings.paths, progress=settings.trainer.progress_bar)
    progress = settings.trainer.progress_bar
    tasks = evaluation_tasks(dataset)
    model = settings.model.name
    refit = None
    if model in BASELINES:
        baselines = evaluate_baselines((model,), dataset, tasks, settings, progress=progress)
        results = results_of(baselines)
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
            two_tower = evaluate_on_splits(
                split_scorers(load_checkpoint_module(settings.paths.artifacts_dir), dataset),
                tasks,
                settings.eval,
                progress=progress,
                label=model,
            )
        else:
            two_tower = evaluate_scorer(index.scorer(), tasks, settings.eval, progress=progress, label=model)
        baselines = evaluate_baselines(settings.eval.baselines, dataset, tasks, settings, progress=progress)
        results = {**results_of(baselines), model: two_tower}
        refit = index.manifest.get("refit")
        if refit is not None:
            log.warning(
                "the index in %s was refitted on train + validation: its validation figures are not "
                "a held-out measure (two-tower train reports the selection fit's), and its test "
                "figures pair fairly only with baselines refitted alike (trainer.refit=true)",
                settings.paths.artifacts_dir,
            )
    reference = None if model in BASELINES else model
    report, _ = write_model_report(
        dataset,
        tasks,
        results,
        settings,
        reference=reference,
        tuning=tunings(baselines),
        refits={**refit_records(baselines), model: refit},
    )
    if reference is not None:
        write_comparison_plots(report, results, settings)
    print(format_table(report))


main = hydra_entry(run)

if __name__ == "__main__":
    main()
