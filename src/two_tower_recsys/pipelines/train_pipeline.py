"""``two-tower train``: the whole job, from raw data to the served index.

data (downloaded only if missing) -> preprocessing -> popularity baseline -> two-tower training
(Lightning, validated every epoch) -> test metrics of the best epoch -> artifacts, plots,
metrics.json, all logged to MLflow. ``model=popularity`` stops after the baseline.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import yaml
from lightning.pytorch.utilities import rank_zero_only

from two_tower_recsys.artifacts.catalogue import with_movies_added
from two_tower_recsys.artifacts.store import write_index
from two_tower_recsys.data.movielens import read_movielens_zip
from two_tower_recsys.evaluation.bootstrap import SplitBootstrap
from two_tower_recsys.evaluation.evaluator import EvaluationResult
from two_tower_recsys.evaluation.plots import plot_learning_curves, plot_recall_at_k
from two_tower_recsys.evaluation.report import METRICS_FILE, format_table, update_metrics_file
from two_tower_recsys.inference.packaging import package_model, pyfunc_spec, quiet_artifact_transfers
from two_tower_recsys.models.popularity import popularity_counts
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
    bootstrap_on_splits,
    bootstrap_settings,
    evaluate_on_splits,
    evaluate_popularity,
    evaluation_tasks,
    metrics_of,
)
from two_tower_recsys.pipelines.hydra_edge import hydra_entry
from two_tower_recsys.pipelines.run_directory import (
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
from two_tower_recsys.retrieval.scorers import EmbeddingScorer
from two_tower_recsys.settings import AppConfig
from two_tower_recsys.tracking.mlflow_tracking import TrainingRun, git_commit, resolve_tracking_target
from two_tower_recsys.training.fit import FitResult, fit_two_tower
from two_tower_recsys.training.validation import logged_name

log = logging.getLogger(__name__)

POPULARITY, TWO_TOWER = "popularity", "two_tower"
LEARNING_CURVES_PNG = "learning_curves.png"
RECALL_AT_K_PNG = "recall_at_k_test.png"


def run(settings: AppConfig) -> None:
    dataset = prepare_dataset(settings.data, settings.paths, progress=settings.trainer.progress_bar)
    cold = None
    if settings.eval.cold_start_share:  # every process trains without the held-out movies
        cold = hold_out_movies(dataset, settings.eval.cold_start_share, settings.seed)
        dataset = cold.warm
    if rank_zero_only.rank != 0:
        # A DDP worker started by Lightning's launcher: it only trains.
        fit_model(dataset, settings, None, RunStart(run_directory(settings), resume_point(settings)))
        return
    # Built once: popularity, per-epoch validation and the final evaluation all use them.
    tasks = evaluation_tasks(dataset)
    popularity = evaluate_popularity(
        tasks, dataset.n_items, settings.eval, progress=settings.trainer.progress_bar
    )
    report = update_metrics_file(
        settings.paths.artifacts_dir / METRICS_FILE,
        dataset.stats,
        POPULARITY,
        metrics_of(popularity),
        bootstrap_on_splits({POPULARITY: popularity}, settings.eval),
    )
    if settings.model.name == POPULARITY:
        print(format_table(report))
        return
    run_start = start_run(settings, dataset.stats["input_md5"])
    tracking = start_tracking(settings, dataset, run_start) if settings.logging.enabled else None
    try:
        report = train_and_publish(dataset, tasks, settings, popularity, tracking, run_start, cold)
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


def train_and_publish(
    dataset: ProcessedDataset,
    tasks: Tasks,
    settings: AppConfig,
    popularity: dict[str, EvaluationResult],
    tracking: TrainingRun | None,
    run_start: RunStart,
    cold: ColdStartSplit | None = None,
) -> dict[str, Any]:
    fit = fit_model(dataset, settings, tracking, run_start, tasks)
    scorer = published_scorer(fit.module, dataset)
    manifest = publish_index(dataset, settings, fit, scorer)
    refresh_derived_artifacts(settings)
    two_tower = evaluate_on_splits(
        split_scorers(fit.module, dataset),
        tasks,
        settings.eval,
        progress=settings.trainer.progress_bar,
        label=TWO_TOWER,
    )
    log.info("wrote artifacts to %s (%d files)", settings.paths.artifacts_dir, len(manifest["files"]))
    metrics_path = settings.paths.artifacts_dir / METRICS_FILE
    results = {TWO_TOWER: two_tower, POPULARITY: popularity}
    # Both models' ranks are in memory only here: the one place paired differences are computed.
    bootstrap = bootstrap_on_splits(results, settings.eval, pairs=((TWO_TOWER, POPULARITY),))
    report = update_metrics_file(metrics_path, dataset.stats, TWO_TOWER, metrics_of(two_tower), bootstrap)
    if cold is not None:
        report[COLD_START] = cold_start_report(cold, fit, scorer, settings)
        record_cold_start(metrics_path, report[COLD_START])
    plots = write_plots(fit, popularity, two_tower, settings)
    if tracking is not None:
        log_results(tracking, fit, results, bootstrap, [*plots, metrics_path])
        publish_to_mlflow(tracking, settings)
    return report


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
    dataset: ProcessedDataset, settings: AppConfig, fit: FitResult, scorer: EmbeddingScorer
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
        tables = read_movielens_zip(settings.paths.raw_zip)
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
        },
    )


def refresh_derived_artifacts(settings: AppConfig) -> None:
    """Rebuild what was derived from the previous index, so nothing stale stays beside the new one:
    the MLflow package always (under a second), the ONNX scorer when one was exported before."""
    paths = settings.paths
    packaged = package_model(paths.artifacts_dir, paths.mlflow_model_dir, settings.infer)
    log.info("wrote the MLflow pyfunc model to %s", packaged.path)
    if paths.onnx_model.exists():
        from two_tower_recsys.inference.onnx_export import export_from_artifacts  # loads the exporter

        export_from_artifacts(paths.artifacts_dir, paths.onnx_model)
        log.info("re-exported %s from the new checkpoint", paths.onnx_model)


def publish_to_mlflow(tracking: TrainingRun, settings: AppConfig) -> None:
    """The composed config as ``config.yaml``, and the pyfunc model logged to the run and registered
    (``logging.mlflow.registered_model_name``), so ``models:/<name>/<version>`` serves it."""
    tracking.log_text(yaml.safe_dump(_plain(dataclasses.asdict(settings)), sort_keys=False), "config.yaml")
    with tempfile.TemporaryDirectory(prefix="two-tower-pyfunc-") as workdir:
        spec = pyfunc_spec(settings.paths.artifacts_dir, Path(workdir), settings.infer)
        with quiet_artifact_transfers():
            tracking.log_pyfunc_model(spec.arguments, settings.logging.mlflow.registered_model_name)


def log_results(
    tracking: TrainingRun,
    fit: FitResult,
    results_by_model: dict[str, dict[str, EvaluationResult]],
    bootstrap_by_split: dict[str, SplitBootstrap],
    files: list[Path],
) -> None:
    """Final metrics as ``{split}_{model}_recall_at_50`` with ``_ci_low`` / ``_ci_high`` beside,
    and paired differences as ``{split}_{a}_minus_{b}_recall_at_50_diff`` / ``_ci_low`` / ``_ci_high``.
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
    tracking.log_metrics(logged)
    for path in files:
        tracking.log_artifact(path)


def _bounds_metrics(prefix: str, intervals: dict[str, tuple[float, float]]) -> dict[str, float]:
    bounds = {}
    for name, (low, high) in intervals.items():
        bounds[f"{logged_name(name, prefix)}_ci_low"] = low
        bounds[f"{logged_name(name, prefix)}_ci_high"] = high
    return bounds


def write_plots(
    fit: FitResult,
    popularity: dict[str, EvaluationResult],
    two_tower: dict[str, EvaluationResult],
    settings: AppConfig,
) -> list[Path]:
    plots_dir = settings.paths.plots_dir
    monitor = f"recall@{settings.trainer.monitor_k}"
    curves = {
        name: [record.metrics[name] for record in fit.history]
        for name in (monitor, f"ndcg@{settings.trainer.monitor_k}")
        if all(name in record.metrics for record in fit.history)
    }
    return [
        plot_learning_curves(
            [record.epoch for record in fit.history],
            [record.train_loss for record in fit.history],
            curves,
            plots_dir / LEARNING_CURVES_PNG,
            best_epoch=fit.best_epoch,
        ),
        plot_recall_at_k(
            {TWO_TOWER: two_tower[TEST].ranks, POPULARITY: popularity[TEST].ranks},
            plots_dir / RECALL_AT_K_PNG,
            bands=bootstrap_settings(settings.eval),
        ),
    ]


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
