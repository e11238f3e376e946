"""``two-tower train``: the whole job, from raw data to the served index.

data (downloaded only if missing) -> preprocessing -> the baselines of ``eval.baselines`` ->
two-tower training (Lightning, validated every epoch) -> test metrics of the best epoch (or, with
``trainer.refit``, of a fresh model trained on train + validation for as many epochs) ->
artifacts, plots, metrics.json, all logged to MLflow. ``model=popularity|ease|als`` evaluates that
baseline alone and stops.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import yaml
from lightning.pytorch.utilities import rank_zero_only

from two_tower_recsys.artifacts.catalogue import with_movies_added
from two_tower_recsys.artifacts.store import verified_manifest, write_index
from two_tower_recsys.data.movielens import read_movielens_zip
from two_tower_recsys.evaluation.bootstrap import SplitBootstrap
from two_tower_recsys.evaluation.plots import plot_learning_curves
from two_tower_recsys.evaluation.report import BASELINES, BEYOND_ACCURACY, METRICS_FILE, REFIT, format_table
from two_tower_recsys.inference.answer_table_growth import previous_answer_table
from two_tower_recsys.inference.packaging import (
    PACKAGED_INDEX,
    package_model,
    pyfunc_spec,
    quiet_artifact_transfers,
)
from two_tower_recsys.models.popularity import popularity_counts
from two_tower_recsys.pipelines.baselines import BaselineRun, evaluate_baselines
from two_tower_recsys.pipelines.cold_start import (
    COLD_START,
    ColdStartSplit,
    evaluate_cold_start,
    format_cold_start_table,
    hold_out_movies,
    record_cold_start,
)
from two_tower_recsys.pipelines.evaluation_suite import (
    Tasks,
    evaluate_on_splits,
    evaluation_tasks,
    refit_record,
)
from two_tower_recsys.pipelines.hydra_edge import hydra_entry
from two_tower_recsys.pipelines.model_report import (
    Results,
    refit_records,
    results_of,
    tunings,
    write_comparison_plots,
    write_model_report,
)
from two_tower_recsys.pipelines.run_directory import (
    REFIT_DIR,
    RunStart,
    mark_finished,
    record_mlflow_run,
    resume_point,
    run_directory,
    start_run,
)
from two_tower_recsys.pipelines.trained_scorers import published_scorer, split_scorers
from two_tower_recsys.preprocessing.prepare import prepare_dataset
from two_tower_recsys.preprocessing.processed import ProcessedDataset
from two_tower_recsys.preprocessing.rated import rated_pairs
from two_tower_recsys.preprocessing.split import TEST, VAL
from two_tower_recsys.retrieval.scorers import EmbeddingScorer, Scorer
from two_tower_recsys.settings import BASELINES as BASELINE_MODELS
from two_tower_recsys.settings import AppConfig
from two_tower_recsys.tracking.mlflow_tracking import TrainingRun, git_commit, resolve_tracking_target
from two_tower_recsys.training.fit import FitResult, fit_two_tower
from two_tower_recsys.training.validation import logged_name

log = logging.getLogger(__name__)

TWO_TOWER = "two_tower"
LEARNING_CURVES_PNG = "learning_curves.png"


def run(settings: AppConfig) -> None:
    dataset = prepare_dataset(
        settings.data,
        settings.paths,
        item_features=settings.model.item_features,
        progress=settings.trainer.progress_bar,
    )
    cold = None
    if settings.eval.cold_start_share:  # every process trains without the held-out movies
        cold = hold_out_movies(dataset, settings.eval.cold_start_share, settings.seed)
        dataset = cold.warm
    if rank_zero_only.rank != 0:
        # A DDP worker started by Lightning's launcher: it only trains.
        fit_and_refit(dataset, settings, None, RunStart(run_directory(settings), resume_point(settings)))
        return
    # Built once: the baselines, per-epoch validation and the final evaluation all use them.
    tasks = evaluation_tasks(dataset)
    alone = settings.model.name in BASELINE_MODELS
    baselines = evaluate_baselines(
        (settings.model.name,) if alone else settings.eval.baselines,
        dataset,
        tasks,
        settings,
        progress=settings.trainer.progress_bar,
    )
    if baselines:  # eval.baselines=[] leaves nothing to report before training
        # Written before training, so a failed training still leaves the baselines' report.
        report, _ = write_model_report(
            dataset,
            tasks,
            results_of(baselines),
            settings,
            tuning=tunings(baselines),
            refits=refit_records(baselines),
        )
    if alone:
        print(format_table(report))
        return
    run_start = start_run(settings, dataset.stats["input_md5"])
    tracking = start_tracking(settings, dataset, run_start) if settings.logging.enabled else None
    try:
        report = train_and_publish(dataset, tasks, settings, baselines, tracking, run_start, cold)
    except BaseException:
        if tracking is not None:
            tracking.finish("FAILED")
        raise
    mark_finished(run_start.directory)
    if tracking is not None:
        tracking.finish()
    print(format_table(report))
    if COLD_START in report:
        print(f"\n{format_cold_start_table(report[COLD_START])}")


def start_tracking(settings: AppConfig, dataset: ProcessedDataset, run_start: RunStart) -> TrainingRun:
    target = resolve_tracking_target(settings.logging.mlflow)
    resume_run_id = run_start.mlflow_run_id
    if resume_run_id is not None and run_start.mlflow_uri != target.uri:
        log.warning(
            "the interrupted run logged to MLflow run %s at %s, not at %s: the resumed run gets a new one",
            resume_run_id,
            run_start.mlflow_uri,
            target.uri,
        )
        resume_run_id = None
    tracking = TrainingRun(
        target,
        settings.logging.mlflow.experiment_name,
        run_name=f"{TWO_TOWER}-{dataset.stats['name']}",
        resume_run_id=resume_run_id,
    )
    record_mlflow_run(run_start.directory, tracking.run_id, target.uri)
    if resume_run_id is None:  # a resumed run has its params already (MLflow refuses to change them)
        tracking.log_params(_plain(dataclasses.asdict(settings)))
    tracking.set_tags(
        {
            "git_commit": git_commit(Path(__file__).parent),
            "dataset": dataset.stats["name"],
            "dataset_md5": dataset.stats["input_md5"],
            **{f"dataset.{key}": value for key, value in dataset.stats.items()},
        }
    )
    return tracking


def fit_model(
    dataset: ProcessedDataset,
    settings: AppConfig,
    tracking: TrainingRun | None,
    run_start: RunStart,
    tasks: Tasks | None = None,
) -> FitResult:
    return fit_two_tower(
        dataset,
        model_cfg=settings.model,
        trainer_cfg=settings.trainer,
        eval_cfg=settings.eval,
        seed=settings.seed,
        checkpoint_dir=run_start.directory,
        resume_from=run_start.resume_from,
        loggers=[tracking.lightning_logger()] if tracking is not None else None,
        validation_task=tasks[VAL] if tasks is not None else None,
    )


def fit_and_refit(
    dataset: ProcessedDataset,
    settings: AppConfig,
    tracking: TrainingRun | None,
    run_start: RunStart,
    tasks: Tasks | None = None,
) -> tuple[FitResult, FitResult]:
    """(the fit that chose the epoch on validation, the model to test and publish): the same fit,
    or with ``trainer.refit`` a fresh one on train + validation."""
    selection = fit_model(dataset, settings, tracking, run_start, tasks)
    if not settings.trainer.refit:
        return selection, selection
    return selection, refit_model(dataset, settings, run_start.directory, selection)


def refit_model(
    dataset: ProcessedDataset, settings: AppConfig, run_dir: Path, selection: FitResult
) -> FitResult:
    """A fresh model (same seed) on train + validation positives, trained for the epochs the
    selection fit needed to reach its best one and kept as it ends: validation cannot choose among
    its epochs, since it trains on the validation movies. Not logged (the learning curves are the
    selection fit's); its checkpoints go to their own directory, emptied first, so that a resumed
    run trains it again whole."""
    directory = run_dir / REFIT_DIR
    if rank_zero_only.rank == 0:  # DDP workers train in it too, but only global zero writes there
        shutil.rmtree(directory, ignore_errors=True)
    epochs = refit_epochs(selection)
    log.info("refitting on train + validation for %d epochs", epochs)
    return fit_two_tower(
        with_validation_in_train(dataset),
        model_cfg=settings.model,
        trainer_cfg=settings.trainer,
        eval_cfg=settings.eval,
        seed=settings.seed,
        checkpoint_dir=directory,
        fixed_epochs=epochs,
    )


def refit_epochs(selection: FitResult) -> int:
    return selection.best_epoch + 1  # best_epoch counts from 0


def with_validation_in_train(dataset: ProcessedDataset) -> ProcessedDataset:
    """Validation's positives added to train; validation and test themselves unchanged."""
    return dataclasses.replace(dataset, train=pl.concat([dataset.train, dataset.val]))


def train_and_publish(
    dataset: ProcessedDataset,
    tasks: Tasks,
    settings: AppConfig,
    baselines: dict[str, BaselineRun],
    tracking: TrainingRun | None,
    run_start: RunStart,
    cold: ColdStartSplit | None = None,
) -> dict[str, Any]:
    fit, published = fit_and_refit(dataset, settings, tracking, run_start, tasks)
    refit = refit_record(tasks, epochs=refit_epochs(fit)) if published is not fit else None
    scorer = published_scorer(published.module, dataset)
    manifest = publish_index(dataset, settings, published, scorer, refit)
    refresh_derived_artifacts(settings)
    two_tower = evaluate_on_splits(
        two_tower_scorers(fit, published, dataset),
        tasks,
        settings.eval,
        progress=settings.trainer.progress_bar,
        label=TWO_TOWER,
    )
    log.info("wrote artifacts to %s (%d files)", settings.paths.artifacts_dir, len(manifest["files"]))
    metrics_path = settings.paths.artifacts_dir / METRICS_FILE
    results = {**results_of(baselines), TWO_TOWER: two_tower}
    # Every model's ranks are in memory here: paired differences against the two-tower.
    report, bootstrap = write_model_report(
        dataset,
        tasks,
        results,
        settings,
        reference=TWO_TOWER,
        tuning=tunings(baselines),
        refits={**refit_records(baselines), TWO_TOWER: refit},
    )
    if cold is not None:
        report[COLD_START] = cold_start_report(cold, published, scorer, settings)
        record_cold_start(metrics_path, report[COLD_START])
    plots = [write_learning_curves(fit, settings), *write_comparison_plots(report, results, settings)]
    if tracking is not None:
        log_results(tracking, fit, results, bootstrap, report, [*plots, metrics_path])
        publish_to_mlflow(tracking, settings)
    return report


def two_tower_scorers(
    selection: FitResult, published: FitResult, dataset: ProcessedDataset
) -> dict[str, Scorer]:
    """Validation scores the selection fit (a refit trained on the validation movies), test the
    published model."""
    if published is selection:
        return split_scorers(selection.module, dataset)
    return {
        VAL: split_scorers(selection.module, dataset)[VAL],
        TEST: split_scorers(published.module, dataset)[TEST],
    }


def cold_start_report(
    cold: ColdStartSplit, fit: FitResult, scorer: EmbeddingScorer, settings: AppConfig
) -> dict[str, Any]:
    """The held-out movies' vectors as a new movie would get them, ranked for every user."""
    if settings.model.reads_content:
        held_out = cold.warm.titles.sort("item_idx")[cold.cold_items.tolist()]
        vectors = fit.module.net.item_tower.content.cpu().eval().encode(held_out)
    else:  # ids only: the held-out movies' id rows were never trained
        vectors = scorer.item_embeddings_t.T[torch.from_numpy(cold.cold_items)]
    return evaluate_cold_start(cold, scorer.user_embeddings, vectors, settings.eval)


def publish_index(
    dataset: ProcessedDataset,
    settings: AppConfig,
    fit: FitResult,
    scorer: EmbeddingScorer,
    refit: dict[str, Any] | None = None,
) -> dict:
    """The offline indexing stage: embeddings, lookups and filters that inference loads."""
    all_positives = pl.concat([dataset.train, dataset.val, dataset.test]).select("user_idx", "item_idx")
    item_embeddings = scorer.item_embeddings_t.T
    item_ids, titles = dataset.item_ids, dataset.titles
    popularity = popularity_counts(all_positives, dataset.n_items)
    rated = dataset.rated
    content = fit.module.net.item_tower.content if settings.model.reads_content else None
    if content is not None:
        # Every movie of the catalogue gets a vector: the ones training dropped (too few
        # positives, or no rating at all) are served from their content; the ratings users gave
        # them join the rated set, so that exclude=rated hides them too.
        content = content.cpu().eval()
        tables = read_movielens_zip(settings.paths.raw_zip, movie_content=settings.model.item_features)
        rest = tables.movies.filter(~pl.col("movieId").is_in(dataset.item_ids.tolist())).sort("movieId")
        item_embeddings, item_ids, titles, popularity = with_movies_added(
            item_embeddings, item_ids, titles.sort("item_idx"), popularity, rest, content
        )
        rated = rated_pairs(tables.ratings, dataset.user_ids, item_ids)
        log.info("%d catalogue movies without enough ratings get their content vector", rest.height)
    return write_index(
        settings.paths.artifacts_dir,
        checkpoint=fit.best_checkpoint,
        user_embeddings=scorer.user_embeddings,
        item_embeddings=item_embeddings,
        temperature=settings.model.temperature,
        user_ids=dataset.user_ids,
        item_ids=item_ids,
        titles=titles,
        seen_pairs=all_positives,
        popularity=popularity,
        rated_pairs=rated,
        history_tower=fit.module.net.user_tower if fit.module.reads_histories else None,
        movie_content=content,
        provenance={
            "config": _plain(dataclasses.asdict(settings)),
            "dataset": dataset.stats,
            "best_epoch": fit.best_epoch,
            **({"refit": refit} if refit is not None else {}),
        },
    )


def refresh_derived_artifacts(settings: AppConfig) -> None:
    """Rebuild what was derived from the previous index, so nothing stale stays beside the new one:
    the MLflow package always (under a second), the ONNX scorer when one was exported before."""
    paths = settings.paths
    packaged = package_model(
        paths.artifacts_dir, paths.mlflow_model_dir, settings.infer, progress=settings.trainer.progress_bar
    )
    log.info("wrote the MLflow pyfunc model to %s", packaged.path)
    if paths.onnx_model.exists():
        from two_tower_recsys.inference.onnx_export import export_from_artifacts  # loads the exporter

        export_from_artifacts(paths.artifacts_dir, paths.onnx_model)
        log.info("re-exported %s from the new checkpoint", paths.onnx_model)


def publish_to_mlflow(tracking: TrainingRun, settings: AppConfig) -> None:
    """The composed config as ``config.yaml``, and the pyfunc model logged to the run and registered
    (``logging.mlflow.registered_model_name``), so ``models:/<name>/<version>`` serves it."""
    tracking.log_text(yaml.safe_dump(_plain(dataclasses.asdict(settings)), sort_keys=False), "config.yaml")
    paths = settings.paths
    # The local package (refresh_derived_artifacts) holds this index's answer table already:
    # scoring every user again would double the slowest step (about 2 minutes at ML-20M size).
    built = previous_answer_table(
        paths.mlflow_model_dir / PACKAGED_INDEX, verified_manifest(paths.artifacts_dir)
    )
    with tempfile.TemporaryDirectory(prefix="two-tower-pyfunc-") as workdir:
        spec = pyfunc_spec(
            paths.artifacts_dir,
            Path(workdir),
            settings.infer,
            built=built,
            progress=settings.trainer.progress_bar,
        )
        with quiet_artifact_transfers():
            tracking.log_pyfunc_model(spec.arguments, settings.logging.mlflow.registered_model_name)


def log_results(
    tracking: TrainingRun,
    fit: FitResult,
    results_by_model: Results,
    bootstrap_by_split: dict[str, SplitBootstrap],
    report: dict[str, Any],
    files: list[Path],
) -> None:
    """Final metrics as ``{split}_{model}_recall_at_50`` with ``_ci_low`` / ``_ci_high`` beside,
    paired differences as ``{split}_{a}_minus_{b}_recall_at_50_diff`` / ``_ci_low`` / ``_ci_high``,
    beyond-accuracy metrics as ``test_{model}_coverage_at_10`` and a baseline's chosen
    regularisation as ``{model}_chosen_{parameter}``.
    """
    logged: dict[str, float] = {"best_epoch": fit.best_epoch}
    for model, results in results_by_model.items():
        for split, result in results.items():
            prefix = f"{split}_{model}"
            logged.update({logged_name(name, prefix): value for name, value in result.metrics.items()})
            logged.update(_bounds_metrics(prefix, bootstrap_by_split[split].intervals[model]))
    for split, bootstrap in bootstrap_by_split.items():
        for pair, differences in bootstrap.paired.items():
            prefix = f"{split}_{pair.replace('-', '_minus_')}"
            for name, difference in differences.items():
                logged[f"{logged_name(name, prefix)}_diff"] = difference.diff
            logged.update(_bounds_metrics(prefix, {name: d.interval for name, d in differences.items()}))
    for model, metrics in report.get(BEYOND_ACCURACY, {}).items():
        if model in results_by_model:
            logged.update(
                {
                    logged_name(name, f"test_{model}"): value
                    for name, value in metrics.items()
                    if value is not None
                }
            )
    for model, tuning in report.get(BASELINES, {}).items():
        if model in results_by_model:
            logged[f"{model}_chosen_{tuning['parameter']}"] = tuning["chosen"]
    for model, refit in report.get(REFIT, {}).items():
        if model in results_by_model and "epochs" in refit:
            logged[f"{model}_refit_epochs"] = refit["epochs"]
    tracking.log_metrics(logged)
    for path in files:
        tracking.log_artifact(path)


def _bounds_metrics(prefix: str, intervals: dict[str, tuple[float, float]]) -> dict[str, float]:
    bounds = {}
    for name, (low, high) in intervals.items():
        bounds[f"{logged_name(name, prefix)}_ci_low"] = low
        bounds[f"{logged_name(name, prefix)}_ci_high"] = high
    return bounds


def write_learning_curves(fit: FitResult, settings: AppConfig) -> Path:
    monitor = f"recall@{settings.trainer.monitor_k}"
    curves = {
        name: [record.metrics[name] for record in fit.history]
        for name in (monitor, f"ndcg@{settings.trainer.monitor_k}")
        if all(name in record.metrics for record in fit.history)
    }
    return plot_learning_curves(
        [record.epoch for record in fit.history],
        [record.train_loss for record in fit.history],
        curves,
        settings.paths.plots_dir / LEARNING_CURVES_PNG,
        best_epoch=fit.best_epoch,
    )


def _plain(value: Any) -> Any:
    """asdict() output with Paths and tuples made JSON-friendly."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


main = hydra_entry(run)

if __name__ == "__main__":
    main()
