"""Typed settings: the plain objects that library code receives, and the one source of every default.

Each frozen dataclass here is also the schema of its Hydra config group (registered in Hydra's
ConfigStore by ``pipelines/hydra_edge.py``), so OmegaConf rejects unknown keys and values of the
wrong type while Hydra composes, and the YAML under ``configs/`` holds only what differs from these
defaults. ``__post_init__`` checks what a type cannot say: ranges, choices, combinations. Nothing
below the pipelines reads a global configuration.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from two_tower_recsys.errors import ConfigError


def _require_positive(owner: str, **values: float | None) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ConfigError(f"{owner}.{name} must be positive, got {value}")


def _require_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"config key {key} must be one of {', '.join(choices)}, got {value!r}")


def _freeze_lists(settings: Any, *names: str) -> None:
    """OmegaConf hands lists to ``tuple[...]`` fields: store tuples, so frozen settings stay hashable."""
    for name in names:
        value = getattr(settings, name)
        if value is not None and not isinstance(value, tuple):
            object.__setattr__(settings, name, tuple(value))


# The choices of the string settings below (OmegaConf has no Literal type); library code that
# takes one of them checks against these.
MODEL_NAMES: tuple[str, ...] = ("two_tower", "popularity", "ease", "als")
USER_TOWERS: tuple[str, ...] = ("id", "sequence")
NEGATIVES: tuple[str, ...] = ("in_batch", "full", "mixed")
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "lazy_adam")
EXCLUDE_CHOICES: tuple[str, ...] = ("rated", "positives", "none")
INDEX_CHOICES: tuple[str, ...] = ("exact", "pq", "hnsw")


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and seed of a generated MovieLens-format dataset."""

    users: int = 2_000
    movies: int = 1_500
    ratings: int = 150_000
    seed: int = 0
    clusters: int = 16  # latent taste groups: enough that collaborative signal beats popularity

    def __post_init__(self) -> None:
        owner = "data.synthetic"
        _require_positive(owner, users=self.users, movies=self.movies, clusters=self.clusters)
        if self.ratings < self.users:
            raise ConfigError(
                f"{owner}.ratings must be at least {owner}.users ({self.users}: every user rates "
                f"a movie), got {self.ratings}"
            )
        if self.ratings > self.users * self.movies:
            raise ConfigError(
                f"{owner}.ratings must be at most users x movies ({self.users * self.movies}), "
                f"got {self.ratings}"
            )
        if self.clusters > self.movies:
            raise ConfigError(
                f"{owner}.clusters must be at most {owner}.movies ({self.movies}), got {self.clusters}"
            )
        if self.seed < 0:
            raise ConfigError(f"{owner}.seed must be non-negative, got {self.seed}")


@dataclass(frozen=True)
class DataConfig:
    """Where a dataset comes from and how its ratings become positives."""

    name: str  # also names the raw zip: data/raw/<name>.zip (paths.raw_zip)
    url: str | None = None  # grouplens download; None for custom and synthetic data
    md5: str | None = None  # expected checksum of the zip; None: recorded on first verified download
    md5_url: str | None = None  # grouplens publishes <zip>.md5 beside each zip
    size_bytes: int | None = None
    synthetic: SyntheticSpec | None = None  # set for generated datasets
    # How ratings become positives (the original author's defaults): ratings >= 4 stars are
    # positives, and users and movies with fewer than 5 positives are dropped.
    rating_threshold: float = 4.0
    min_user_interactions: int = 5
    min_item_interactions: int = 5

    def __post_init__(self) -> None:
        _require_positive(
            "data",
            min_user_interactions=self.min_user_interactions,
            min_item_interactions=self.min_item_interactions,
        )


@dataclass(frozen=True)
class PathsConfig:
    # configs/paths/default.yaml ties these to other keys: raw_zip to data/raw/<data.name>.zip,
    # the artifacts below to paths.artifacts_dir. The defaults here serve code that builds one.
    raw_zip: Path
    processed_dir: Path = Path("data/processed")
    artifacts_dir: Path = Path("artifacts")
    plots_dir: Path = Path("plots")
    onnx_model: Path = Path("artifacts/model_scoring.onnx")  # (user_idx, item_idx) -> score
    mlflow_model_dir: Path = Path("artifacts/mlflow_model")  # the pyfunc package that is served
    recommendations: Path = Path("artifacts/recommendations.parquet")  # written by recommend-all
    new_movies: Path | None = None  # two-tower add-movies: a movies.csv of movies to add to the index


BASELINES = ("popularity", "ease", "als")


@dataclass(frozen=True)
class EvalConfig:
    recall_ks: tuple[int, ...] = (10, 50, 100)
    ndcg_ks: tuple[int, ...] = (10, 50)
    batch_size: int = 1024  # users scored at once: 1024 x 27k float32 = 110 MB
    # Percentile bootstrap over users for every interval: 1000 resamples put the 2.5% and 97.5%
    # quantiles within ~0.1 standard error of where infinitely many would.
    bootstrap_resamples: int = 1000
    bootstrap_seed: int = 0
    confidence: float = 0.95
    # Classical baselines fitted and reported beside the model (docs/baselines.md); each
    # regularisation is chosen on validation from its grid, never on test.
    baselines: tuple[str, ...] = ("popularity", "ease", "als")
    ease_l2_grid: tuple[float, ...] = (50.0, 200.0, 500.0, 2000.0)
    # EASE is skipped (one log line) when its item-item matrices would need more than this.
    ease_max_memory_gb: float = 16.0
    als_regularization_grid: tuple[float, ...] = (1.0, 10.0, 100.0)
    als_factors: int = 64
    als_iterations: int = 15
    als_alpha: float = 10.0  # confidence of a positive (1 for the rest)
    # Beyond-accuracy metrics (coverage, popularity bias, novelty) of the test top-K lists.
    beyond_accuracy_ks: tuple[int, ...] = (10, 50)
    segment_k: int = 50  # Recall@K and NDCG@K by user history length and movie popularity
    # > 0: hold this share of the movies out of training entirely and report how well new movies
    # are ranked (pipelines/cold_start.py); the warm metrics are then those of the other movies.
    cold_start_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.cold_start_share < 1.0:
            raise ConfigError(
                f"eval.cold_start_share must be in [0, 1) (0: off), got {self.cold_start_share}"
            )
        _freeze_lists(self, "recall_ks", "ndcg_ks", "baselines", "ease_l2_grid")
        _freeze_lists(self, "als_regularization_grid", "beyond_accuracy_ks")
        _require_positive(
            "eval",
            batch_size=self.batch_size,
            bootstrap_resamples=self.bootstrap_resamples,
            ease_max_memory_gb=self.ease_max_memory_gb,
            als_factors=self.als_factors,
            als_iterations=self.als_iterations,
            segment_k=self.segment_k,
            als_alpha=self.als_alpha,
        )
        unknown = sorted(set(self.baselines) - set(BASELINES))
        if unknown:
            raise ConfigError(f"eval.baselines: unknown baseline(s) {unknown}; choose from {list(BASELINES)}")
        for grid_name in ("ease_l2_grid", "als_regularization_grid"):
            grid = getattr(self, grid_name)
            if not grid or any(value <= 0 for value in grid):
                raise ConfigError(
                    f"eval.{grid_name} must be a non-empty list of positive numbers, got {grid}"
                )
        _require_positive(
            "eval", **{f"beyond_accuracy_ks[{i}]": k for i, k in enumerate(self.beyond_accuracy_ks)}
        )
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"eval.confidence must lie strictly between 0 and 1, got {self.confidence}")
        if self.bootstrap_seed < 0:
            raise ConfigError(f"eval.bootstrap_seed must be non-negative, got {self.bootstrap_seed}")
        for k in (*self.recall_ks, *self.ndcg_ks):
            _require_positive("eval", k=k)


@dataclass(frozen=True)
class ModelConfig:
    # MODEL_NAMES; popularity: score = positives in train (+ validation for test); ease, als: baselines
    name: str = "two_tower"
    # id: a learned ID embedding per user | sequence: a causal transformer over recent positives
    user_tower: str = "id"
    embedding_dim: int = 64
    temperature: float = 1.0  # score = dot(user, movie) / temperature
    # in_batch | full (softmax over the whole catalogue) | mixed (the batch's movies plus a pool
    # of sampled_negatives drawn per step from smoothed popularity; training/negatives.py)
    negatives: str = "in_batch"
    # negatives=mixed only: the pool's size. 4096 matches the full softmax on validation where
    # 2048 fell behind (docs/benchmarks.md), for 1.3x the epoch.
    sampled_negatives: int = 4096
    logq_correction: bool = True  # subtract log sampling probability from in-batch logits (Yi et al. 2019)
    init_std: float = 0.01  # N(0, 0.01) initial embeddings (0.1 was 0.008 worse on validation)
    # Weight of the batch rows' mean squared embedding norm in the loss; chosen on validation (README).
    l2_reg: float = 0.05
    # user_tower=sequence only: a causal transformer over the user's most recent positives.
    max_history: int = 50  # most recent positives read per user
    n_blocks: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    # negatives=full or mixed only: ε of the target distribution spread over the row's candidates.
    label_smoothing: float = 0.0
    # user_tower=sequence, negatives=full or mixed only: a target's earlier movies in its training
    # window (the same user's positives, never ranked for them) are not negatives.
    hide_earlier_positives: bool = False
    # What the movie tower reads: id (a learned embedding per trained movie) and/or content,
    # genres, year, title (models/components/content.py); the movie vector is their sum.
    item_features: tuple[str, ...] = ("id",)
    # With id and content: the share of training rows whose id embedding is left out, so that the
    # content part learns to stand alone (what a new movie has); 0: always id + content.
    id_dropout: float = 0.0

    @property
    def reads_content(self) -> bool:
        return any(feature != "id" for feature in self.item_features)

    def __post_init__(self) -> None:
        _require_choice("model.name", self.name, MODEL_NAMES)
        _require_choice("model.user_tower", self.user_tower, USER_TOWERS)
        _require_choice("model.negatives", self.negatives, NEGATIVES)
        _freeze_lists(self, "item_features")
        self._check_item_features()
        _require_positive(
            "model",
            embedding_dim=self.embedding_dim,
            temperature=self.temperature,
            max_history=self.max_history,
            n_blocks=self.n_blocks,
            n_heads=self.n_heads,
        )
        if self.embedding_dim % self.n_heads:
            raise ConfigError(
                f"model.embedding_dim ({self.embedding_dim}) must be divisible by "
                f"model.n_heads ({self.n_heads})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"model.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        _require_positive("model", sampled_negatives=self.sampled_negatives)
        if self.label_smoothing and self.negatives == "in_batch":
            raise ConfigError(
                "model.label_smoothing needs model.negatives=full or mixed (the in-batch loss has none)"
            )
        if self.hide_earlier_positives and (self.user_tower != "sequence" or self.negatives == "in_batch"):
            raise ConfigError(
                "model.hide_earlier_positives needs model.user_tower=sequence and model.negatives=full "
                f"or mixed, got user_tower={self.user_tower}, negatives={self.negatives}"
            )

    def _check_item_features(self) -> None:
        known = ("id", "genres", "year", "title", "tags", "genome")
        unknown = [feature for feature in self.item_features if feature not in known]
        if unknown:
            raise ConfigError(
                f"model.item_features: unknown feature {unknown[0]!r}; choose from {', '.join(known)}"
            )
        if not self.item_features or len(set(self.item_features)) != len(self.item_features):
            raise ConfigError(
                "model.item_features must name each feature once, at least one, "
                f"got {list(self.item_features)}"
            )
        if not 0.0 <= self.id_dropout < 1.0:
            raise ConfigError(f"model.id_dropout must be in [0, 1), got {self.id_dropout}")
        if self.id_dropout and not (self.reads_content and "id" in self.item_features):
            raise ConfigError(
                "model.id_dropout needs model.item_features with id and content, e.g. [id,genres]"
            )


@dataclass(frozen=True)
class TrainerConfig:
    max_epochs: int = 50  # an upper bound: early stopping on validation Recall@50 ends runs sooner
    max_interactions: int = 2_000_000  # positive pairs drawn (fresh, seeded) per epoch
    # Pairs per step, and the in-batch negatives of each (4096: 0.004 worse on validation).
    batch_size: int = 2048
    # adam | adamw | lazy_adam (Adam on the batch's rows only: 1.3-2x faster on CPU)
    optimizer: str = "lazy_adam"
    lr: float = 0.01
    weight_decay: float = 0.0  # adam/adamw only; the two-tower regularises with model.l2_reg instead
    # 0: off. Otherwise validation, checkpoints and the trained model use an exponential moving
    # average of the weights, updated after every step with this decay.
    ema_decay: float = 0.0
    early_stopping_patience: int = 5  # epochs without validation Recall@monitor_k improvement
    monitor_k: int = 50
    # gpu: also set trainer.optimizer=adam for multi-GPU DDP (NCCL has no sparse all-reduce)
    accelerator: str = "cpu"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    deterministic: bool = True
    progress_bar: bool = True
    limit_train_batches: int | float | None = None
    resume: bool = False  # continue the interrupted run in <paths.artifacts_dir>/run/
    # After choosing the epoch on validation, train a fresh model on train + validation for that
    # many epochs and test and publish it: a model that never saw each user's newest positive loses
    # on test. Validation figures stay the selection fit's; the baselines refit alike.
    refit: bool = False

    def __post_init__(self) -> None:
        _require_choice("trainer.optimizer", self.optimizer, OPTIMIZERS)
        _require_positive(
            "trainer",
            max_epochs=self.max_epochs,
            max_interactions=self.max_interactions,
            batch_size=self.batch_size,
            lr=self.lr,
            num_nodes=self.num_nodes,
        )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"trainer.ema_decay must be in [0, 1) (0: no averaging), got {self.ema_decay}")
        if self.optimizer == "lazy_adam" and self.weight_decay:
            raise ConfigError(
                "trainer.weight_decay applies to trainer.optimizer=adam or adamw only "
                "(lazy_adam updates the batch's rows; regularise with model.l2_reg)"
            )


# What `two-tower tune` may search: keys of these sections (the data and the evaluation stay fixed).
TUNABLE_SECTIONS: dict[str, type] = {"model": ModelConfig, "trainer": TrainerConfig}


@dataclass(frozen=True)
class SearchDimension:
    """One tuned key: a range (``low``..``high``, sampled log-uniformly when ``log``) or ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False  # for scales such as learning rates: as many trials in 1e-4..1e-3 as in 1e-3..1e-2
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        _freeze_lists(self, "choices")


@dataclass(frozen=True)
class TuneConfig:
    """``two-tower tune``: an Optuna study of ``space`` on the validation split (never test)."""

    # {section: {key: {low, high, log} or {choices}}}, e.g. {trainer: {lr: {low: 1e-4, high: 1e-2,
    # log: true}}}; sections are model and trainer. Presets: configs/hparams_search/.
    space: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    n_trials: int = 20  # in all: a resumed study (same tune.dir) runs only the trials it lacks
    timeout_s: float | None = None  # no new trial starts after this long
    # A trial's value: the mean over these training seeds of its best validation
    # Recall@trainer.monitor_k (one seed's best epoch is a noisy choice: docs/tuning.md).
    seeds: tuple[int, ...] = (0,)
    sampler_seed: int = 0  # Optuna's TPE sampler: the same study samples the same trials
    # Trials behind the others are stopped early (Optuna's PercentilePruner): after an epoch, a trial
    # whose validation value is outside the best prune_percentile % of the completed trials' values
    # at that epoch ends as pruned. 50: the median rule; 0: only trials level with the best go on;
    # null: no pruning.
    prune_percentile: float | None = 50.0
    prune_startup_trials: int = 5  # completed trials before any pruning
    prune_warmup_epochs: int = 2  # epochs of every trial that are never pruned
    dir: Path = Path("artifacts/tune")  # study.db (a rerun resumes it) and the trials' scratch files
    study_name: str = "two-tower"
    # The best trial is written as <config_dir>/experiment/<experiment_name>.yaml (config_dir null:
    # tune.dir); `two-tower train hydra.searchpath=[file://<config_dir>] experiment=<name>` uses it.
    experiment_name: str = "tuned"
    config_dir: Path | None = None

    def __post_init__(self) -> None:
        _freeze_lists(self, "seeds")
        _require_positive("tune", n_trials=self.n_trials, timeout_s=self.timeout_s)
        if not self.seeds or any(seed < 0 for seed in self.seeds):
            raise ConfigError(f"tune.seeds must be a non-empty list of non-negative seeds, got {self.seeds}")
        if self.prune_percentile is not None and not 0.0 <= self.prune_percentile <= 100.0:
            raise ConfigError(
                f"tune.prune_percentile must be in [0, 100] or null, got {self.prune_percentile}"
            )
        if self.prune_startup_trials < 0 or self.prune_warmup_epochs < 0:
            raise ConfigError("tune.prune_startup_trials and tune.prune_warmup_epochs must be non-negative")
        if not self.experiment_name or not self.experiment_name.replace("-", "_").isidentifier():
            raise ConfigError(
                "tune.experiment_name must be a plain name (letters, digits, _ and -), "
                f"got {self.experiment_name!r}"
            )
        self.dimensions  # noqa: B018  (parsed now: a bad search space is refused while composing)

    @property
    def dimensions(self) -> dict[str, SearchDimension]:
        """The search space by dotted key (``trainer.lr``), each dimension checked against its setting."""
        dimensions = {}
        for section, keys in self.space.items():
            if section not in TUNABLE_SECTIONS:
                raise ConfigError(
                    f"tune.space.{section}: only {' and '.join(TUNABLE_SECTIONS)} settings can be tuned"
                )
            hints = typing.get_type_hints(TUNABLE_SECTIONS[section])
            for name, spec in (keys or {}).items():
                key = f"{section}.{name}"
                if name not in hints:
                    raise ConfigError(f"tune.space.{key}: unknown key (no {name} in the {section} settings)")
                if key == "trainer.refit":
                    raise ConfigError(
                        "tune.space.trainer.refit: not tunable (trials are judged on validation, which a "
                        "refit trains on); pass trainer.refit=true and the written experiment refits"
                    )
                dimension = settings_from_mapping(SearchDimension, spec or {}, where=f"tune.space.{key}")
                _check_dimension(f"tune.space.{key}", dimension, hints[name])
                dimensions[key] = dimension
        return dimensions


def _check_dimension(where: str, dimension: SearchDimension, setting_type: Any) -> None:
    if dimension.choices is not None:
        if dimension.low is not None or dimension.high is not None:
            raise ConfigError(f"{where}: give either choices or low and high, not both")
        if not dimension.choices:
            raise ConfigError(f"{where}: choices is empty")
        return
    if dimension.low is None or dimension.high is None:
        raise ConfigError(f"{where}: give low and high (a range) or choices")
    if setting_type not in (int, float):
        raise ConfigError(f"{where}: a range needs a number setting; give choices instead")
    if not dimension.low < dimension.high:
        raise ConfigError(
            f"{where}: empty range: low ({dimension.low}) must be below high ({dimension.high})"
        )
    if setting_type is int and not (float(dimension.low).is_integer() and float(dimension.high).is_integer()):
        raise ConfigError(
            f"{where}: an integer setting needs whole low and high, got {dimension.low}..{dimension.high}"
        )
    if dimension.log and dimension.low <= 0:
        raise ConfigError(f"{where}: a log range needs a positive low, got {dimension.low}")


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: str = "http://127.0.0.1:8080"  # start one with `make mlflow`
    experiment_name: str = "two-tower-recsys"
    fallback_uri: str = "mlruns"  # local store used when no server answers at tracking_uri
    connect_timeout_s: float = 2.0
    # Training logs the pyfunc model to its run and registers a new version under this name;
    # None logs it without registering.
    registered_model_name: str | None = "two-tower"

    def __post_init__(self) -> None:
        if self.registered_model_name is not None and not self.registered_model_name.strip():
            raise ConfigError(
                "logging.mlflow.registered_model_name must be a model name, or null to not register"
            )


@dataclass(frozen=True)
class LoggingConfig:
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    enabled: bool = True


@dataclass(frozen=True)
class InferConfig:
    user_id: int = 1
    movie_id: int = 1  # two-tower similar: the movie whose nearest movies are printed
    k: int = 10
    # A sequence user tower only: movieIds the user liked, most recent last; the user vector is
    # computed from them instead of the stored one (e.g. infer.history=[296,318,593]).
    history: tuple[int, ...] | None = None
    # Never recommended: every movie the user rated (rated), only the positives (positives), nothing.
    exclude: str = "rated"
    # pq or hnsw: approximate indexes, for catalogues of millions (README, "Approximate indexes")
    index: str = "exact"
    pq_refine_factor: int = 10  # pq: candidates scored exactly per wanted movie: recall vs latency
    hnsw_m: int = 32  # graph degree (built when the model is packaged with index=hnsw)
    hnsw_ef_construction: int = 200  # build-time beam
    hnsw_ef_search: int = 1024  # query-time beam (grows to k): recall vs latency (README table)
    hnsw_norm_ranges: int = 4  # items grouped by norm, one graph each: recall on any norm spread
    batch_size: int = 1024  # users scored at once: bounds memory at batch_size x n_items floats
    max_request_rows: int = 10_000  # larger serving requests are refused with a 400
    # rows x k per serving request: 10k users at k=100, enough for batch jobs, yet one request
    # cannot make the server build gigabytes of JSON.
    max_response_items: int = 1_000_000
    max_history_items: int = 10_000  # movieIds in one user's request history; longer is refused
    # Packaging: every known user's top answer_table_k (exact index) ships with the model, so a
    # served request for k <= it is a lookup; 0 ships none.
    answer_table_k: int = 100

    def __post_init__(self) -> None:
        _freeze_lists(self, "history")
        _require_choice("infer.exclude", self.exclude, EXCLUDE_CHOICES)
        _require_choice("infer.index", self.index, INDEX_CHOICES)
        _require_positive(
            "infer",
            k=self.k,
            max_history_items=self.max_history_items,
            batch_size=self.batch_size,
            max_request_rows=self.max_request_rows,
            max_response_items=self.max_response_items,
            pq_refine_factor=self.pq_refine_factor,
            hnsw_m=self.hnsw_m,
            hnsw_ef_construction=self.hnsw_ef_construction,
            hnsw_ef_search=self.hnsw_ef_search,
            hnsw_norm_ranges=self.hnsw_norm_ranges,
        )
        if self.answer_table_k < 0:
            raise ConfigError(
                f"infer.answer_table_k must be 0 (no table) or positive, got {self.answer_table_k}"
            )


@dataclass(frozen=True)
class ServeConfig:
    """``two-tower serve``: the packaged model behind MLflow's scoring server (uvicorn)."""

    host: str = "127.0.0.1"  # loopback only; 0.0.0.0 to listen on every interface
    port: int = 5000
    # uvicorn processes, each with its own copy of the model (~0.55 GB at ML-20M scale). Two
    # serve concurrent clients ~1.5x faster than one on 2 cores (one process's Python runs one
    # request at a time) and a single client as fast (benchmarks/bench_serving.py).
    workers: int = 2
    model: str = "artifacts/mlflow_model"  # a package directory or a models:/ URI
    # Intra-op threads per worker: one request scores one user (a ~1.7 MFLOP product), too small
    # to split, while concurrent requests run on their own threads; more would only contend.
    torch_threads: int = 1

    def __post_init__(self) -> None:
        _require_positive("serve", workers=self.workers, torch_threads=self.torch_threads)
        if not 0 < self.port < 65536:
            raise ConfigError(f"serve.port must be between 1 and 65535, got {self.port}")
        if not self.host or not self.model:
            raise ConfigError("serve.host and serve.model must not be empty")


@dataclass(frozen=True)
class AppConfig:
    data: DataConfig
    paths: PathsConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    seed: int = 42

    def __post_init__(self) -> None:
        check_model_and_trainer(self.model, self.trainer)


def check_model_and_trainer(model: ModelConfig, trainer: TrainerConfig) -> None:
    """Settings that are valid alone but not together."""
    if model.user_tower == "sequence" and trainer.optimizer == "lazy_adam":
        raise ConfigError(
            "model.user_tower=sequence needs trainer.optimizer=adam or adamw (lazy_adam updates "
            "embedding rows only; the transformer's weights are dense)"
        )


T = TypeVar("T")


def schema(cls: type) -> DictConfig:
    """``cls`` as an OmegaConf node, its defaults filled in, that overrides and merges may change.

    OmegaConf marks the node of a frozen dataclass read-only; the settings are frozen once built
    (:func:`OmegaConf.to_object`), but Hydra must still merge YAML and overrides into the schema.
    """
    node = OmegaConf.structured(cls)
    _make_writable(node)
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        # A required section (AppConfig.data) would be created read-only when first merged into.
        if dataclasses.is_dataclass(hints[spec.name]) and OmegaConf.is_missing(node, spec.name):
            node[spec.name] = schema(hints[spec.name])
    return node


def _make_writable(node: DictConfig | ListConfig) -> None:
    OmegaConf.set_readonly(node, None)  # None: inherit from the parent, and the root allows writes
    children = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for key in children:
        child = node._get_node(key)
        if isinstance(child, DictConfig | ListConfig):
            _make_writable(child)


def settings_from_mapping(cls: type[T], values: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a plain mapping (a saved config, a package's model_config).

    OmegaConf checks keys and types against ``cls``, as it does while Hydra composes; a problem
    is a :class:`ConfigError` naming the key under ``where``.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where or cls.__name__} must be a mapping, got {type(values).__name__}")
    try:
        return OmegaConf.to_object(OmegaConf.merge(schema(cls), values))
    except OmegaConfBaseException as exc:
        raise config_error(exc, where) from None


def config_error(exc: OmegaConfBaseException, where: str = "") -> ConfigError:
    """OmegaConf's several-line message as one line that starts with the full key.

    ``where`` prefixes the key when the config checked is part of a larger one.
    """
    message = (getattr(exc, "msg", None) or str(exc) or type(exc).__name__).strip().splitlines()[0]
    key = ".".join(part for part in (where, getattr(exc, "full_key", None) or "") if part)
    return ConfigError(f"{key}: {message}" if key else message)
