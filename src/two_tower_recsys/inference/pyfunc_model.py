"""The MLflow pyfunc model: the recommendation core behind ``mlflow.pyfunc`` and ``mlflow models serve``.

Input: a table with columns ``user_id`` and ``k`` (integers), one request per row, and optionally
``history`` (a list of movieIds per row, most recent last; a sequence user tower only). Output:
one answer per row, in order, each ``{"user_id", "k", "fallback", "recommendations"}`` (plus
``unknown_history_items`` for a row that sent a history) exactly as
:meth:`UserRecommendations.as_dict` (the CLI prints the same).

A table with columns ``movie_id`` and ``k`` instead (no ``user_id``) asks for similar movies:
one answer per row, ``{"movie_id", "title", "k", "similar": [[movieId, score, title], ...]}``
as :meth:`SimilarMovies.as_dict` (``two-tower similar`` prints the same); an unknown movie_id is
a 400 naming the row.

Errors: a bad request raises :class:`MlflowException` with ``INVALID_PARAMETER_VALUE``, which the
scoring server answers with a 400 whose JSON body carries our one-line reason (in ``detail``, and
at the end of ``message``) and no stack trace; any other exception would come back as a 400 *with*
the traceback. An unexpected failure is logged here, traceback included, and answered with a
clean 500.

Rows the package's answer table holds (:mod:`~two_tower_recsys.inference.answer_table`: known
users, ``k`` up to ``infer.answer_table_k``, the packaged ``exclude``) are read from it; the others
are computed by the core, one request per call.

Loading reads the index copy packaged with the model (verified by its manifest): embeddings and
lookups, no Lightning and no checkpoint. A package that sits inside an artifacts directory
(``artifacts/mlflow_model``) whose index was retrained after packaging is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR

from two_tower_recsys.artifacts.store import index_id, refuse_if_stale
from two_tower_recsys.errors import RequestError
from two_tower_recsys.inference.recommender import Recommender
from two_tower_recsys.inference.similar import SimilarMovieFinder
from two_tower_recsys.inference.validation import RequestLimits, asks_similar, parse_similar
from two_tower_recsys.settings import InferConfig, settings_from_mapping

log = logging.getLogger(__name__)

INDEX_ARTIFACT = "index"
RECOMMENDATION_FORMAT = "recommendation_format"  # the predict parameter
# The result type of mlflow.pyfunc.spark_udf(..., params={"recommendation_format": "structs"}).
SPARK_RESULT_TYPE = (
    "user_id long, k long, fallback boolean, "
    "recommendations array<struct<movieId: long, score: double, title: string>>"
)
# The serving settings, recorded in the package's MLmodel and overridable at load time with
# mlflow.pyfunc.load_model(path, model_config={...}).
MODEL_CONFIG_KEYS = (
    "exclude",
    "index",
    "pq_refine_factor",
    "hnsw_m",
    "hnsw_ef_construction",
    "hnsw_ef_search",
    "hnsw_norm_ranges",
    "batch_size",
    "max_request_rows",
    "max_response_items",
    "max_history_items",
)


def model_config(infer: InferConfig) -> dict[str, Any]:
    return {key: getattr(infer, key) for key in MODEL_CONFIG_KEYS}


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """``predict(DataFrame[user_id, k]) -> list of answers``; settings come from ``model_config``."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        config = {**model_config(InferConfig()), **(context.model_config or {})}
        unknown = sorted(set(config) - set(MODEL_CONFIG_KEYS))
        if unknown:
            raise ValueError(f"unknown model_config key(s): {', '.join(unknown)}")
        infer = settings_from_mapping(InferConfig, config, "model_config")  # checks types and choices
        self.exclude = infer.exclude
        self.limits = RequestLimits(infer.max_request_rows, infer.max_response_items, infer.max_history_items)
        index_dir = Path(context.artifacts[INDEX_ARTIFACT])
        self.recommender = Recommender.from_settings(index_dir, infer)
        package = index_dir.parents[1]  # <package>/artifacts/index
        built_from = index_id(self.recommender.index.manifest)
        refuse_if_stale(package, built_from, package.parent, "two-tower package-mlflow")
        self.similar_movies = SimilarMovieFinder(self.recommender.index)

    # A DataFrame annotation is one MLflow does not turn into a signature: with a list[...] hint the
    # server would demand {"inputs": ...} requests instead of dataframe_split / dataframe_records.
    # (A mapping of column -> values, as {"inputs": {...}} requests arrive, is accepted too.)
    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        # params: {"recommendation_format": "structs"} for Spark (see SPARK_RESULT_TYPE)
        recommendation_format = (params or {}).get(RECOMMENDATION_FORMAT, "triples")
        try:
            if asks_similar(model_input):
                similar = parse_similar(model_input, self.limits, self.recommender.n_items)
                return [
                    answer.as_dict() for answer in self.similar_movies.similar(similar.movie_ids, similar.ks)
                ]
            rows = self.limits.parse(model_input, self.recommender.n_items)
            answers = self.recommender.recommend(  # answer-table rows are looked up there
                rows.user_ids, rows.ks, exclude=self.exclude, histories=rows.histories
            )
            return [answer.as_dict(recommendation_format) for answer in answers]
        except RequestError as exc:
            # The server prefixes `message` with a dump of the request; `detail` stays our one line.
            raise MlflowException.invalid_parameter_value(str(exc), detail=str(exc)) from None
        except Exception:
            log.exception("recommendation failed")
            raise MlflowException("internal error while recommending", error_code=INTERNAL_ERROR) from None
