"""``two-tower tune``: choose hyperparameters on validation with an Optuna study.

``two-tower tune hparams_search=sequence tune.n_trials=30`` samples ``tune.space`` (Optuna's TPE
sampler); each trial trains with the real training code (``fit_two_tower``) once per seed of
``tune.seeds`` and is worth its mean best validation Recall@``trainer.monitor_k``; a trial behind the
others is stopped after an epoch (``tune.prune_*``). The test split is never read. The study lives in
``<tune.dir>/study.db``: the same command again resumes it. Every trial is an MLflow run nested under
the study's run. The best trial is written as an experiment file that ``two-tower train`` takes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import tempfile
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import yaml

from two_tower_recsys.errors import ConfigError
from two_tower_recsys.evaluation.evaluator import EvaluationTask, evaluation_task
from two_tower_recsys.pipelines.hydra_edge import config_dir, hydra_entry
from two_tower_recsys.pipelines.run_directory import require_same_identity, run_identity
from two_tower_recsys.preprocessing.prepare import prepare_dataset
from two_tower_recsys.preprocessing.processed import ProcessedDataset
from two_tower_recsys.preprocessing.split import VAL
from two_tower_recsys.settings import TUNABLE_SECTIONS, AppConfig, SearchDimension
from two_tower_recsys.tracking.mlflow_tracking import (
    TrackingTarget,
    TrainingRun,
    git_commit,
    resolve_tracking_target,
)
from two_tower_recsys.training.fit import fit_two_tower, monitored_metric
from two_tower_recsys.training.pruning import EpochEndPruning
from two_tower_recsys.utils.fileio import atomic_write_text

log = logging.getLogger(__name__)

STUDY_FILE = "study.db"
EXPERIMENT_GROUP = "experiment"
# Study attributes: what the study was started with, and its MLflow run (a resume reopens it).
IDENTITY, MLFLOW_RUN_ID, MLFLOW_URI = "identity", "mlflow_run_id", "mlflow_uri"
DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def setting_type(key: str) -> Any:
    section, name = key.split(".", 1)
    return typing.get_type_hints(TUNABLE_SECTIONS[section])[name]


def with_values(settings: AppConfig, values: dict[str, Any]) -> AppConfig:
    """``settings`` with the dotted keys of ``values`` replaced; the settings' own checks run again."""
    changes: dict[str, dict[str, Any]] = {section: {} for section in TUNABLE_SECTIONS}
    for key, value in values.items():
        section, name = key.split(".", 1)
        changes[section][name] = value
    return dataclasses.replace(
        settings,
        **{
            section: dataclasses.replace(getattr(settings, section), **changes[section])
            for section in changes
        },
    )


def _extremes(dimension: SearchDimension) -> list[Any]:
    return list(dimension.choices) if dimension.choices is not None else [dimension.low, dimension.high]


def check_space(settings: AppConfig, dimensions: dict[str, SearchDimension]) -> None:
    """Refuse a space with values the settings reject (alone, or all lows and all highs together),
    before any data is read: a study must not fail on its tenth trial."""
    trials = [{key: value} for key, dimension in dimensions.items() for value in _extremes(dimension)]
    ranges = {key: dimension for key, dimension in dimensions.items() if dimension.choices is None}
    trials += [{key: dimension.low for key, dimension in ranges.items()}]
    trials += [{key: dimension.high for key, dimension in ranges.items()}]
    for values in trials:
        try:
            with_values(settings, _typed(values))
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"tune.space: a trial with {values} would be refused: {exc}") from None


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: int(value) if setting_type(key) is int and isinstance(value, float) else value
        for key, value in values.items()
    }


def base_values(settings: AppConfig, dimensions: dict[str, SearchDimension]) -> dict[str, Any] | None:
    """The starting configuration's values of the tuned keys, when the space holds every one."""
    values = {key: getattr(getattr(settings, key.split(".")[0]), key.split(".", 1)[1]) for key in dimensions}
    for key, value in values.items():
        dimension = dimensions[key]
        inside = (
            value in dimension.choices
            if dimension.choices is not None
            else dimension.low <= value <= dimension.high
        )
        if not inside:
            return None
    return values


def item_features_read(settings: AppConfig, dimensions: dict[str, SearchDimension]) -> tuple[str, ...]:
    """Every movie feature a trial may read (``model.item_features`` and its choices, if tuned):
    those read from their own file of the zip (tags, genome) must be in the prepared dataset."""
    features = set(settings.model.item_features)
    tuned = dimensions.get("model.item_features")
    if tuned is not None and tuned.choices is not None:
        for choice in tuned.choices:
            features.update(choice)
    return tuple(sorted(features))


def suggest(trial: optuna.Trial, key: str, dimension: SearchDimension) -> Any:
    if dimension.choices is not None:
        return trial.suggest_categorical(key, list(dimension.choices))
    if setting_type(key) is int:
        return trial.suggest_int(key, int(dimension.low), int(dimension.high), log=dimension.log)
    return trial.suggest_float(key, dimension.low, dimension.high, log=dimension.log)


@dataclasses.dataclass
class TrialRunner:
    """What every trial shares: the data, its validation task, the study's MLflow run."""

    settings: AppConfig
    dataset: ProcessedDataset
    validation: EvaluationTask
    target: TrackingTarget | None
    parent_run_id: str | None
    scratch: Path

    @property
    def monitor(self) -> str:
        return monitored_metric(self.settings.trainer)

    def objective(self, trial: optuna.Trial) -> float:
        dimensions = self.settings.tune.dimensions
        values = {key: suggest(trial, key, dimension) for key, dimension in dimensions.items()}
        settings = with_values(self.settings, values)
        run = self._trial_run(trial, values)
        try:
            value = self._train(trial, settings, run)
        except optuna.TrialPruned:
            if run is not None:
                epochs = len(trial.storage.get_trial(trial._trial_id).intermediate_values)
                run.set_tags({"optuna.state": "PRUNED", "optuna.pruned_after_epochs": epochs})
                run.finish()
            raise
        except BaseException:
            if run is not None:
                run.set_tags({"optuna.state": "FAIL"})
                run.finish("FAILED")
            raise
        if run is not None:
            run.set_tags({"optuna.state": "COMPLETE"})
            run.finish()
        return value

    def _trial_run(self, trial: optuna.Trial, values: dict[str, Any]) -> TrainingRun | None:
        if self.target is None:
            return None
        mlflow = self.settings.logging.mlflow
        run = TrainingRun(
            self.target,
            mlflow.experiment_name,
            run_name=f"trial-{trial.number}",
            parent_run_id=self.parent_run_id,
        )
        run.log_params({**values, "tune.seeds": list(self.settings.tune.seeds)})
        run.set_tags({"optuna.study_name": trial.study.study_name, "optuna.trial_number": trial.number})
        return run

    def _train(self, trial: optuna.Trial, settings: AppConfig, run: TrainingRun | None) -> float:
        tune = settings.tune
        best_by_seed = {}
        for position, seed in enumerate(tune.seeds):
            # The first seed's fit carries the validation curve (to MLflow) and the pruning: Optuna
            # compares trials epoch by epoch, one value per epoch.
            first = position == 0
            pruning = first and tune.prune_percentile is not None
            with tempfile.TemporaryDirectory(dir=self.scratch) as checkpoints:
                fit = fit_two_tower(
                    self.dataset,
                    model_cfg=settings.model,
                    trainer_cfg=settings.trainer,
                    eval_cfg=settings.eval,
                    seed=seed,
                    checkpoint_dir=Path(checkpoints),
                    loggers=[run.lightning_logger()] if first and run is not None else None,
                    validation_task=self.validation,
                    callbacks=[EpochEndPruning(trial, self.monitor)] if pruning else (),
                )
            metric = f"recall@{settings.trainer.monitor_k}"
            best_by_seed[seed] = max(record.metrics[metric] for record in fit.history)
        value = statistics.mean(best_by_seed.values())
        if run is not None:
            run.log_metrics(
                {
                    f"best_{self.monitor}": value,
                    **{f"best_{self.monitor}_seed_{seed}": best for seed, best in best_by_seed.items()},
                }
            )
        log.info(
            "trial %d: mean best %s %.4f over seeds %s", trial.number, self.monitor, value, list(best_by_seed)
        )
        return value


def open_study(settings: AppConfig, identity: dict[str, Any]) -> optuna.Study:
    tune = settings.tune
    tune.dir.mkdir(parents=True, exist_ok=True)
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.PercentilePruner(
            tune.prune_percentile,
            n_startup_trials=tune.prune_startup_trials,
            n_warmup_steps=tune.prune_warmup_epochs,
        )
        if tune.prune_percentile is not None
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        storage=f"sqlite:///{(tune.dir / STUDY_FILE).absolute()}",
        study_name=tune.study_name,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=tune.sampler_seed),
        pruner=pruner,
        load_if_exists=True,
    )
    saved = study.user_attrs.get(IDENTITY)
    if saved is None:
        study.set_user_attr(IDENTITY, identity)
    else:
        require_same_identity(
            saved,
            identity,
            f"the study {tune.study_name!r} in {tune.dir / STUDY_FILE}",
            "start another with a new tune.dir or tune.study_name",
        )
    return study


def study_identity(settings: AppConfig, dataset_md5: str, base_experiment: str | None) -> dict[str, Any]:
    """What a resumed study must share with the one it continues (JSON-comparable, dotted keys)."""
    identity = run_identity(settings, dataset_md5)
    identity.pop("seed")  # the trials train with tune.seeds
    tuned = {
        "experiment": base_experiment,
        "tune.seeds": list(settings.tune.seeds),
        "tune.space": json.dumps(settings.tune.space, sort_keys=True),
    }
    return {**identity, **tuned}


def start_study_run(
    settings: AppConfig, study: optuna.Study, dataset: ProcessedDataset
) -> tuple[TrackingTarget, str]:
    """The study's MLflow run: created with the study, reopened when the study resumes."""
    target = resolve_tracking_target(settings.logging.mlflow)
    previous = study.user_attrs.get(MLFLOW_RUN_ID) if study.user_attrs.get(MLFLOW_URI) == target.uri else None
    run = TrainingRun(
        target,
        settings.logging.mlflow.experiment_name,
        run_name=f"tune-{study.study_name}",
        resume_run_id=previous,
    )
    if previous is None:
        study.set_user_attr(MLFLOW_RUN_ID, run.run_id)
        study.set_user_attr(MLFLOW_URI, target.uri)
        run.log_params(dataclasses.asdict(settings))
    run.set_tags(
        {
            "git_commit": git_commit(Path(__file__).parent),
            "dataset": dataset.stats["name"],
            "dataset_md5": dataset.stats["input_md5"],
            "optuna.study_name": study.study_name,
            "optuna.storage": str((settings.tune.dir / STUDY_FILE).absolute()),
        }
    )
    return target, run.run_id


def experiment_yaml(
    best: optuna.trial.FrozenTrial,
    base_experiment: str | None,
    monitor: str,
    seeds: Sequence[int],
    refit: bool = False,
) -> str:
    """The best trial as an experiment file: the experiment the study started from, then the tuned
    keys; with ``refit`` (``trainer.refit=true`` given to tune) also ``trainer.refit: true``."""
    nested: dict[str, dict[str, Any]] = {}
    for key, value in best.params.items():
        section, name = key.split(".", 1)
        nested.setdefault(section, {})[name] = value
    header = [
        "# @package _global_",
        f"# Written by `two-tower tune`: trial {best.number}, mean best {monitor} {best.value:.4f}",
        f"# over seeds {list(seeds)} (validation split).",
        "# The tuned keys only; every other key is the experiment's below, or its default.",
    ]
    if refit:
        # The trials never refit: each is judged on validation, which a refit would train on.
        nested.setdefault("trainer", {})["refit"] = True
        header.append("# trainer.refit as asked: the trials chose on validation, training with it refits.")
    body = {"defaults": [base_experiment, "_self_"]} if base_experiment is not None else {}
    body.update(nested)
    return "\n".join(header) + "\n" + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)


def experiment_path(settings: AppConfig) -> Path:
    tune = settings.tune
    root = tune.config_dir if tune.config_dir is not None else tune.dir
    return root / EXPERIMENT_GROUP / f"{tune.experiment_name}.yaml"


def train_command(path: Path, data_overrides: Sequence[str]) -> str:
    """How a user trains with the written file (Hydra finds it through its search path)."""
    root = path.parent.parent.absolute()
    search = [] if root == config_dir().absolute() else [f"'hydra.searchpath=[file://{root}]'"]
    return " ".join(["two-tower train", *data_overrides, *search, f"{EXPERIMENT_GROUP}={path.stem}"])


def run(settings: AppConfig, base_experiment: str | None = None, data_overrides: Sequence[str] = ()) -> Path:
    """Run (or resume) the study; write the best trial's experiment file and return its path."""
    tune = settings.tune
    dimensions = tune.dimensions
    if not dimensions:
        raise ConfigError("tune.space is empty: choose a search space, e.g. hparams_search=sequence")
    if settings.trainer.devices not in (1, "1") or settings.trainer.num_nodes != 1:
        raise ConfigError(
            "two-tower tune trains each trial in one process: set trainer.devices=1 and trainer.num_nodes=1"
        )
    if base_experiment == tune.experiment_name:
        raise ConfigError(
            f"tune.experiment_name must differ from the experiment tuned ({base_experiment}): "
            "the file names its experiment as its base"
        )
    check_space(settings, dimensions)
    if settings.trainer.refit:
        log.info(
            "trainer.refit: the trials choose on validation and never refit; the written experiment refits"
        )
    optuna.logging.disable_default_handler()  # trial results go through our log, on stderr
    optuna.logging.enable_propagation()
    dataset = prepare_dataset(
        settings.data,
        settings.paths,
        item_features=item_features_read(settings, dimensions),
        progress=settings.trainer.progress_bar,
    )
    study = open_study(settings, study_identity(settings, dataset.stats["input_md5"], base_experiment))
    target, parent_run_id = (None, None)
    if settings.logging.enabled:
        target, parent_run_id = start_study_run(settings, study, dataset)
    scratch = tune.dir / "trials"
    scratch.mkdir(parents=True, exist_ok=True)
    done = sum(trial.state in DONE for trial in study.trials)
    start = base_values(settings, dimensions)
    if not study.trials and start is not None:
        study.enqueue_trial(start)  # trial 0: the starting configuration, the one to beat
    objective = TrialRunner(
        settings, dataset, evaluation_task(dataset, VAL), target, parent_run_id, scratch
    ).objective
    if done < tune.n_trials:
        study.optimize(objective, n_trials=tune.n_trials - done, timeout=tune.timeout_s, gc_after_trial=True)
    else:
        log.info("the study in %s has its %d trials already", tune.dir / STUDY_FILE, done)
    completed = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise ConfigError("no trial completed (all were pruned or failed): loosen tune.prune_percentile")
    best = study.best_trial
    monitor = monitored_metric(settings.trainer)
    path = experiment_path(settings)
    atomic_write_text(
        path, experiment_yaml(best, base_experiment, monitor, tune.seeds, refit=settings.trainer.refit)
    )
    if target is not None and parent_run_id is not None:
        parent = TrainingRun(target, settings.logging.mlflow.experiment_name, resume_run_id=parent_run_id)
        parent.log_metrics({f"best_{monitor}": best.value})
        parent.set_tags(
            {"optuna.best_trial": best.number, **{f"best.{key}": value for key, value in best.params.items()}}
        )
        parent.log_artifact(path)
        parent.finish()
    states = [trial.state.name for trial in study.trials]
    print(
        f"best trial {best.number} of {len(states)} ({states.count('COMPLETE')} complete, "
        f"{states.count('PRUNED')} pruned): mean best {monitor} {best.value:.4f}"
    )
    print(json.dumps(best.params))
    print(f"wrote {path}")
    print(f"train with it: {train_command(path, data_overrides)}")
    return path


def _run_from_hydra(settings: AppConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    hydra_config = HydraConfig.get()
    # The data overrides of this command, repeated in the printed train command.
    data_overrides = [
        override
        for override in hydra_config.overrides.task
        if override.lstrip("+~").split("=")[0] == "data"
        or override.lstrip("+~").startswith(("data.", "paths."))
    ]
    run(settings, hydra_config.runtime.choices.get(EXPERIMENT_GROUP), data_overrides)


main = hydra_entry(_run_from_hydra)

if __name__ == "__main__":
    main()
