"""Write the self-contained MLflow pyfunc package that ``mlflow models serve`` runs.

``<destination>/`` is an ordinary MLflow model directory: ``MLmodel`` (signature, input example,
``model_config``), ``artifacts/index/`` (a verified copy of the index: embeddings, lookups, seen
items, popularity, titles, with ``infer.index=pq`` or ``hnsw`` that approximate index built from
the item embeddings, else the answer table of :mod:`~two_tower_recsys.inference.answer_table`, and their
manifest; no checkpoint), ``code/two_tower_recsys/`` (this
package, put first on ``sys.path`` when the model loads, so it serves from any directory without
the package being installed) and ``requirements.txt``. ``MLmodel``'s metadata records the
``index_id`` it was built from: loading a package that sits in an artifacts directory whose index
was retrained since is refused (rerun ``two-tower package-mlflow``; training does it itself).

The package is built beside the destination and swapped in with :func:`replace_directory`, so a
re-run replaces the previous package in one step, and a failed run leaves it untouched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types.schema import (
    AnyType,
    Array,
    ColSpec,
    DataType,
    Object,
    ParamSchema,
    ParamSpec,
    Property,
    Schema,
)

import two_tower_recsys
from two_tower_recsys.artifacts.store import (
    ITEM_EMBEDDINGS,
    USER_MAPPING,
    copy_index,
    index_id,
    verified_manifest,
)
from two_tower_recsys.inference.answer_table import AnswerTable, TopItems, write_answer_table
from two_tower_recsys.inference.answer_table_growth import GrownCatalogue, grown_top_items
from two_tower_recsys.inference.batch import top_items_of_every_user
from two_tower_recsys.inference.candidates import ann_params
from two_tower_recsys.inference.pyfunc_model import INDEX_ARTIFACT, RECOMMENDATION_FORMAT, model_config
from two_tower_recsys.inference.recommender import Recommender
from two_tower_recsys.inference.validation import USER_ID, K
from two_tower_recsys.preprocessing.processed import read_id_mapping
from two_tower_recsys.settings import InferConfig
from two_tower_recsys.utils.fileio import replace_directory, staged_directory

# What the inference code imports; the training stack (Lightning, Hydra) is not needed to serve.
SERVING_REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "polars")
ANN_REQUIREMENTS = ("faiss-cpu",)  # only for a package built with an approximate index
# Loaded by MLflow as "model from code" (read, not imported here: importing it registers a model).
MODEL_CODE = Path(__file__).with_name("mlflow_model_code.py")
_PROGRESS_BAR_VARIABLE = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
PACKAGED_INDEX = Path("artifacts") / INDEX_ARTIFACT  # the index copy in a package, as MLflow saves it

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedModel:
    path: Path
    n_users: int
    n_items: int
    example_user_id: int


def serving_signature() -> ModelSignature:
    """The answer's shape; no input schema on purpose.

    An input schema makes the scoring server convert the request before the model sees it: with
    ``long`` columns it runs ``astype(int64)``, turning 1.5 into 1 and "7" into 7; with ``any``
    columns it cannot parse CSV at all and answers every CSV request with a stack trace. Without
    one the model gets the request as sent and checks it itself (``validation.RequestLimits``);
    the input example documents the columns.
    """
    answer = Object(
        [
            Property(USER_ID, DataType.long),
            Property(K, DataType.long),
            Property("fallback", DataType.boolean),
            Property("recommendations", Array(Array(AnyType()))),  # [movieId, score, title]
        ]
    )
    # recommendation_format "structs": each recommendation as {movieId, score, title} (for Spark)
    params = ParamSchema([ParamSpec(RECOMMENDATION_FORMAT, DataType.string, "triples")])
    return ModelSignature(inputs=None, outputs=Schema([ColSpec(answer)]), params=params)


def pinned_requirements(extra: tuple[str, ...] = ()) -> list[str]:
    names = (*SERVING_REQUIREMENTS, *extra)
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in names]


def _extra_files(
    artifacts_dir: Path,
    infer: InferConfig,
    grown: GrownCatalogue | None,
    built: AnswerTable | None,
    progress: bool,
) -> Callable[[Path], dict[str, Any]]:
    """What the index copy gets beyond the index (written there, listed in its manifest).

    ``infer.index=pq`` or ``hnsw``: that approximate index over the item embeddings.
    ``infer.index=exact``: the answer table (every user's top ``infer.answer_table_k`` under
    ``infer.exclude``), scored from the verified source index, whose files the copy must match;
    with ``grown`` (movies appended since the previous table), that table merged with the new
    movies where it can be (:mod:`~two_tower_recsys.inference.answer_table_growth`); with
    ``built`` (another package's table of this same index), its rows cut to the top
    ``answer_table_k`` where it holds them: nothing is scored again.
    """

    def build(index_dir: Path) -> dict[str, Any]:
        params = ann_params(infer)
        if params is not None:
            item_embeddings = torch.load(index_dir / ITEM_EMBEDDINGS, weights_only=True)
            params.build(item_embeddings.numpy()).write(index_dir / params.file_name)
            return {"ann": params.build_settings()}
        if infer.answer_table_k == 0:
            return {}
        recommender = Recommender.from_artifacts(artifacts_dir, batch_size=infer.batch_size)
        index = recommender.index
        k = min(infer.answer_table_k, recommender.n_items)
        why_not = grown.usable_for(index, k, infer.exclude) if grown is not None else None
        if built is not None and built.answers(np.array([k]), infer.exclude):
            log.info("answer table: the one already built for this index, not scored again")
            batches = _rows_cut_to(built, k, infer.batch_size)
        elif grown is not None and why_not is None:
            log.info("answer table: the previous one merged with the %d new movies", grown.n_new(index))
            batches = grown_top_items(index, grown, k, batch_size=infer.batch_size, progress=progress)
        else:
            if why_not is not None:
                log.info("answer table: every user ranked again, %s", why_not)
            batches = top_items_of_every_user(
                recommender, k, exclude=infer.exclude, progress=progress, desc="answer table"
            )
        return write_answer_table(index_dir, batches, len(index.user_ids), k, infer.exclude)

    return build


def _rows_cut_to(table: AnswerTable, k: int, batch_size: int) -> Iterator[tuple[np.ndarray, TopItems]]:
    """``table``'s rows, each cut to its first ``k`` entries (a top-k is a prefix of a top-K)."""
    n_users = len(table.items)
    for start in range(0, n_users, batch_size):
        users = np.arange(start, min(start + batch_size, n_users), dtype=np.int64)
        yield users, (np.asarray(table.scores[users, :k]), np.asarray(table.items[users, :k]))


@dataclass(frozen=True)
class PyfuncSpec:
    """What ``mlflow.pyfunc.save_model`` and ``log_model`` both take, staged in a work directory."""

    arguments: dict[str, Any]
    manifest: dict[str, Any]
    example_user_id: int


def pyfunc_spec(
    artifacts_dir: Path,
    workdir: Path,
    infer: InferConfig,
    grown: GrownCatalogue | None = None,
    *,
    built: AnswerTable | None = None,
    progress: bool = True,
) -> PyfuncSpec:
    """Stage a verified copy of the index and of this package's code in ``workdir`` and describe
    the model for MLflow (the same arguments whether it is saved to a folder or logged to a run).
    ``built``: another package's answer table of this same index (``previous_answer_table``),
    copied rather than scored again; ``progress``: a progress bar while the table is scored."""
    extra_files = _extra_files(artifacts_dir, infer, grown, built, progress)
    manifest = copy_index(artifacts_dir, workdir / INDEX_ARTIFACT, extra_files)
    code = _copy_package_code(workdir / "code")
    example_user_id = _first_user_id(workdir / INDEX_ARTIFACT)
    arguments = {
        "python_model": str(MODEL_CODE),
        "artifacts": {INDEX_ARTIFACT: str(workdir / INDEX_ARTIFACT)},
        "code_paths": [str(code)],
        "signature": serving_signature(),
        "input_example": pd.DataFrame({USER_ID: [example_user_id], K: [infer.k]}),
        "pip_requirements": pinned_requirements(ANN_REQUIREMENTS if infer.index != "exact" else ()),
        "model_config": model_config(infer),
        "metadata": {
            "two_tower_recsys": {
                "index_id": index_id(manifest),
                "index_created_at": manifest.get("created_at"),
                "dataset": manifest.get("dataset", {}).get("name"),
                "n_users": manifest.get("n_users"),
                "n_items": manifest.get("n_items"),
            }
        },
    }
    return PyfuncSpec(arguments, manifest, example_user_id)


def package_model(
    artifacts_dir: Path,
    destination: Path,
    infer: InferConfig,
    grown: GrownCatalogue | None = None,
    *,
    progress: bool = True,
) -> PackagedModel:
    """Package the index in ``artifacts_dir`` as an MLflow pyfunc model at ``destination``.

    ``grown``: the previous package's answer table, of the index before movies were appended
    (``two-tower add-movies``); read until the new package replaces the previous one.
    """
    destination = Path(destination)
    verified_manifest(Path(artifacts_dir))  # fail before creating anything beside the destination
    with staged_directory(destination) as staging, quiet_artifact_transfers():
        spec = pyfunc_spec(artifacts_dir, staging, infer, grown, progress=progress)
        model_dir = staging / "model"
        mlflow.pyfunc.save_model(path=str(model_dir), **spec.arguments)
        replace_directory(model_dir, destination)
    manifest = spec.manifest
    return PackagedModel(destination, manifest["n_users"], manifest["n_items"], spec.example_user_id)


@contextlib.contextmanager
def quiet_artifact_transfers() -> Iterator[None]:
    """No MLflow "Downloading artifacts" progress bars: they would cut through the console's own."""
    previous = os.environ.get(_PROGRESS_BAR_VARIABLE)
    os.environ[_PROGRESS_BAR_VARIABLE] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_PROGRESS_BAR_VARIABLE, None)
        else:
            os.environ[_PROGRESS_BAR_VARIABLE] = previous


def _copy_package_code(directory: Path) -> Path:
    """A clean copy of this package (no caches) for ``code_paths``."""
    source = Path(two_tower_recsys.__file__).parent
    target = directory / source.name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "configs"))
    return target


def _first_user_id(index_dir: Path) -> int:
    user_ids = read_id_mapping(index_dir / USER_MAPPING)
    return int(user_ids.min()) if len(user_ids) else 1
