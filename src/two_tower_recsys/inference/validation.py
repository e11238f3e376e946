"""What a recommendation request may contain, checked in one place.

The Python API (:meth:`Recommender.recommend`), the CLI and the served model (a table of
``user_id, k`` rows) all go through these checks, so a bad value gets the same one-line
:class:`RequestError` wherever it comes from. Integers only: ``1.5``, ``10.0``, ``"1"``, ``true``
and ``null`` are refused, never truncated or coerced, and a bad row fails the whole request (with
its row number) instead of quietly changing the answers of the others.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from two_tower_recsys.errors import RequestError
from two_tower_recsys.settings import InferConfig

USER_ID, K, HISTORY = "user_id", "k", "history"
COLUMNS = (USER_ID, K)  # required; HISTORY is optional
MOVIE_ID = "movie_id"  # a similar-movies request: columns movie_id and k instead
_REQUEST_COLUMNS = list(COLUMNS)
_INT64 = np.iinfo(np.int64)


def is_integer(value: object) -> bool:
    """True for Python and NumPy integers; False for bools, floats (even 10.0), strings, None."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def describe(value: object, limit: int = 40) -> str:
    """A short JSON-like rendering of a rejected value for error messages."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "null"
    if isinstance(value, np.generic):
        value = value.item()
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_k(k: object) -> int:
    """``k`` as an int, or a RequestError: it must be a positive integer."""
    if not is_integer(k) or not 0 < k <= _INT64.max:
        raise RequestError(f"k must be a positive integer, got {describe(k)}")
    return int(k)


def user_id_array(user_ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """User ids as int64, checked like a request column (row numbers in errors)."""
    if _is_int64_array(user_ids):
        return user_ids  # already checked (the served model's rows): no second pass per request
    return integer_column(_as_series(user_ids), USER_ID)


def _is_int64_array(values: object) -> bool:
    return isinstance(values, np.ndarray) and values.dtype == np.int64 and values.ndim == 1


def k_array(k: int | Sequence[int] | np.ndarray, n_rows: int) -> np.ndarray:
    """One positive k per row: a single ``k`` for every row, or one per row."""
    if not isinstance(k, Sequence | np.ndarray | pd.Series) or isinstance(k, str):
        return np.full(n_rows, check_k(k), dtype=np.int64)
    ks = k if _is_int64_array(k) else integer_column(_as_series(k), K)
    if len(ks) != n_rows:
        raise RequestError(f"got {len(ks)} values of k for {n_rows} users; pass one k, or one per user")
    _check_positive(ks)
    return ks


def _as_series(values: Sequence[int] | np.ndarray) -> pd.Series:
    # Python sequences stay object-typed so that [1, 1.5] is reported at row 1 (as 1.5), not
    # upcast by pandas to float and reported at row 0.
    if isinstance(values, np.ndarray | pd.Series):
        return pd.Series(values)
    return pd.Series(list(values), dtype=object)


def _is_column(values: object) -> bool:
    if isinstance(values, np.ndarray):
        return values.ndim == 1
    return isinstance(values, Sequence | pd.Series) and not isinstance(values, str | bytes)


def integer_column(column: pd.Series, name: str) -> np.ndarray:
    """The column as int64 if every value is an integer in range; else a RequestError naming the row."""
    if column.dtype == np.int64:  # what JSON and CSV integers become: nothing to check, nothing missing
        return column.to_numpy()
    missing = np.flatnonzero(column.isna().to_numpy())
    if missing.size:
        raise RequestError(f"row {missing[0]}: {name} is missing (null)")
    kind = column.dtype.kind
    if kind == "i" or (kind == "u" and (len(column) == 0 or column.max() <= _INT64.max)):
        return column.to_numpy(dtype=np.int64)
    if kind == "f":
        # JSON rows [[1, 10], [2, 10.5]] arrive as one float column: point at the fraction.
        values = column.to_numpy()
        fractional = np.flatnonzero(values != np.trunc(values))
        row = int(fractional[0]) if fractional.size else 0
        raise RequestError(f"row {row}: {name} must be an integer, got {describe(values[row])}")
    for row, value in enumerate(column.tolist()):
        if not is_integer(value):
            raise RequestError(f"row {row}: {name} must be an integer, got {describe(value)}")
        if not _INT64.min <= value <= _INT64.max:
            raise RequestError(f"row {row}: {name} is out of range (at most {_INT64.max}), got {value}")
    return np.asarray(column.tolist(), dtype=np.int64)


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def history_array(value: object, row: int, max_length: int) -> np.ndarray | None:
    """One row's history: movieIds as int64, most recent last; None where the row sent none."""
    if _is_missing(value):
        return None
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu":
        values = value
    elif isinstance(value, list | tuple | np.ndarray) and np.ndim(value) == 1:
        bad = next((i for i, v in enumerate(value) if not is_integer(v)), None)
        if bad is not None:
            raise RequestError(
                f"row {row}: history[{bad}] must be an integer movieId, got {describe(value[bad])}"
            )
        values = np.asarray(value)
    else:
        raise RequestError(f"row {row}: history must be a list of movieIds, got {describe(value)}")
    if len(values) > max_length:
        raise RequestError(f"row {row}: history holds {len(values)} movies; at most {max_length} are allowed")
    if values.dtype.kind == "u" and len(values) and values.max() > _INT64.max:
        raise RequestError(f"row {row}: history holds a movieId out of range (at most {_INT64.max})")
    if values.dtype.kind == "O" and any(not _INT64.min <= v <= _INT64.max for v in values):
        raise RequestError(f"row {row}: history holds a movieId out of range (at most {_INT64.max})")
    return values.astype(np.int64)


def history_arrays(histories: Sequence[object], n_rows: int, max_length: int) -> list[np.ndarray | None]:
    """One history (or None) per row, each checked by :func:`history_array`."""
    if isinstance(histories, str | bytes) or not isinstance(histories, Sequence | np.ndarray | pd.Series):
        raise RequestError(f"history must be one list of movieIds per user, got {describe(histories)}")
    if len(histories) != n_rows:
        raise RequestError(f"got {len(histories)} histories for {n_rows} users; pass one per user")
    return [history_array(value, row, max_length) for row, value in enumerate(histories)]


def _check_positive(ks: np.ndarray) -> None:
    bad = np.flatnonzero(ks <= 0)
    if bad.size:
        raise RequestError(f"row {bad[0]}: k must be a positive integer, got {ks[bad[0]]}")


def as_table(request: object) -> pd.DataFrame:
    """A DataFrame, or a mapping of column -> values (what ``{"inputs": {...}}`` requests become)."""
    if isinstance(request, pd.DataFrame):
        return request
    if isinstance(request, Mapping):
        request = {str(name): _column_values(str(name), values) for name, values in request.items()}
        _one_history_per_row(request)
        columns = {name: _as_series(v) if _is_column(v) else v for name, v in request.items()}
        # Scalars broadcast over the other columns' rows, or make a one-row table on their own.
        index = None if any(_is_column(v) for v in request.values()) else [0]
        try:
            return pd.DataFrame(columns, index=index)
        except (ValueError, TypeError) as exc:  # values pandas cannot lay out as columns
            raise RequestError(f"the request's columns do not form a table: {exc}") from None
    raise RequestError(f"expected a table with columns user_id and k, got {type(request).__name__}")


def _column_values(name: str, values: object) -> object:
    """One column of a mapping request: a list of values or a single value, never an object.

    ``{"inputs": {...}}`` requests arrive with every value wrapped in a NumPy array; a JSON object
    becomes a 0-d array holding a dict, which pandas would read as its keys (or as no rows).
    """
    if isinstance(values, np.ndarray) and values.ndim == 0:
        values = values.item()
    if name == HISTORY and isinstance(values, np.ndarray) and values.ndim == 2:
        return list(values)  # histories of one length arrive as one matrix: a row per user
    if isinstance(values, Mapping | set) or (isinstance(values, np.ndarray) and values.ndim > 1):
        raise RequestError(f"column {name} must be a list of values, got {describe(values)}")
    return values


def _one_history_per_row(request: dict[str, object]) -> None:
    """``{"user_id": 5, "k": 10, "history": [296, 318]}``: one user's history, not two rows."""
    history = request.get(HISTORY)
    scalars = all(not _is_column(v) for name, v in request.items() if name != HISTORY)
    if scalars and _is_column(history) and not any(_is_column(v) for v in history):  # type: ignore[union-attr]
        request[HISTORY] = [history]


@dataclass(frozen=True)
class RequestRows:
    """A validated request: one (user_id, k) per row, in the order they came."""

    user_ids: np.ndarray  # int64
    ks: np.ndarray  # int64, positive, as asked (before the clamp to the catalogue)
    histories: list[np.ndarray | None] | None = None  # per row (None: none sent); None: no column


def _integer_rows(frame: pd.DataFrame, names: list[str]) -> RequestRows:
    """The two columns as int64 arrays (a RequestError naming the row where a value is not one)."""
    positions = [names.index(name) for name in COLUMNS]
    if len(names) == len(COLUMNS):
        # The usual request: two int64 columns, one block in pandas. Taking it whole costs a few
        # us; selecting columns costs ~40 us each (pandas builds its column lookup per new frame).
        values = frame.to_numpy()
        if values.dtype == np.int64:
            return RequestRows(*(np.ascontiguousarray(values[:, position]) for position in positions))
    user_ids, ks = (frame.iloc[:, position] for position in positions)
    return RequestRows(integer_column(user_ids, USER_ID), integer_column(ks, K))


def _check_column_names(names: list[str]) -> None:
    duplicated = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicated:
        raise RequestError(f"column(s) {', '.join(duplicated)} appear more than once")
    missing = [name for name in COLUMNS if name not in names]
    if missing:
        raise RequestError(f"missing column(s) {', '.join(missing)}; send columns user_id and k")


@dataclass(frozen=True)
class RequestLimits:
    """How big one serving request may be (``infer.max_request_rows`` / ``max_response_items``)."""

    max_rows: int
    max_response_items: int  # sum over rows of k after the clamp
    max_history_items: int = InferConfig.max_history_items  # movieIds in one row's history

    def parse(self, frame: pd.DataFrame | Mapping[str, Any], n_items: int) -> RequestRows:
        """Validate a request table (columns user_id and k, optionally history; others are
        ignored): every problem, including a table with more rows or more recommendations in all
        than allowed, is a RequestError."""
        frame = as_table(frame)
        names = [str(name) for name in frame.columns]  # pandas' Index.is_unique costs ~50 us a call
        if names != _REQUEST_COLUMNS:  # the usual request has exactly these: nothing to look for
            _check_column_names(names)
        n_rows = len(frame)
        if n_rows == 0:
            raise RequestError("the request has no rows; send at least one [user_id, k] row")
        if n_rows > self.max_rows:
            raise RequestError(f"the request has {n_rows} rows; at most {self.max_rows} are allowed")
        rows = _integer_rows(frame, names)
        _check_positive(rows.ks)
        items = int(np.minimum(rows.ks, n_items).sum())
        if items > self.max_response_items:
            raise RequestError(
                f"the request asks for {items} recommendations in all (rows x k); at most "
                f"{self.max_response_items} are allowed: send fewer rows or a smaller k"
            )
        if HISTORY not in names:
            return rows
        histories = history_arrays(
            frame.iloc[:, names.index(HISTORY)].tolist(), len(frame), self.max_history_items
        )
        return RequestRows(rows.user_ids, rows.ks, histories)


def asks_similar(frame: pd.DataFrame | Mapping[str, Any]) -> bool:
    """Whether a request asks for similar movies (a ``movie_id`` column, no ``user_id``).

    Anything that is not a table or a mapping of columns is not: the user-request parser then
    refuses it with its own one-line reason."""
    if isinstance(frame, pd.DataFrame):
        names = [str(name) for name in frame.columns]
    elif isinstance(frame, Mapping):
        names = [str(name) for name in frame]
    else:
        return False
    return MOVIE_ID in names and USER_ID not in names


@dataclass(frozen=True)
class SimilarRows:
    """A validated similar-movies request: one (movie_id, k) per row, in the order they came."""

    movie_ids: np.ndarray  # int64 (not yet looked up in the catalogue)
    ks: np.ndarray  # int64, positive


def parse_similar(
    frame: pd.DataFrame | Mapping[str, Any], limits: RequestLimits, n_items: int
) -> SimilarRows:
    """Columns ``movie_id`` and ``k`` (others ignored), within the same size limits as user requests."""
    frame = as_table(frame)
    names = [str(name) for name in frame.columns]
    duplicated = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicated:
        raise RequestError(f"column(s) {', '.join(duplicated)} appear more than once")
    if K not in names:
        raise RequestError("missing column k; a similar-movies request has columns movie_id and k")
    if len(frame) == 0:
        raise RequestError("the request has no rows; send at least one [movie_id, k] row")
    if len(frame) > limits.max_rows:
        raise RequestError(f"the request has {len(frame)} rows; at most {limits.max_rows} are allowed")
    movie_ids = integer_column(frame.iloc[:, names.index(MOVIE_ID)], MOVIE_ID)
    ks = integer_column(frame.iloc[:, names.index(K)], K)
    _check_positive(ks)
    items = int(np.minimum(ks, n_items).sum())
    if items > limits.max_response_items:
        raise RequestError(
            f"the request asks for {items} similar movies in all (rows x k); at most "
            f"{limits.max_response_items} are allowed: send fewer rows or a smaller k"
        )
    return SimilarRows(movie_ids, ks)
