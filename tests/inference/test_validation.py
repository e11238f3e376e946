import re

import numpy as np
import pandas as pd
import pytest

from two_tower_recsys.errors import RequestError
from two_tower_recsys.inference.validation import RequestLimits, check_k, k_array, user_id_array

LIMITS = RequestLimits(max_rows=5, max_response_items=100)
N_ITEMS = 30


def parse(frame, limits=LIMITS):
    return limits.parse(frame, N_ITEMS)


def test_integer_rows_pass_in_order():
    rows = parse(pd.DataFrame({"user_id": [5, 1, 5], "k": [3, 10, 1]}))
    assert rows.user_ids.tolist() == [5, 1, 5] and rows.ks.tolist() == [3, 10, 1]
    assert rows.user_ids.dtype == np.int64


def test_extra_columns_are_ignored_and_mappings_are_tables():
    assert parse(pd.DataFrame({"k": [2], "user_id": [1], "note": ["x"]})).ks.tolist() == [2]
    assert parse({"user_id": [1, 2], "k": [3, 4]}).user_ids.tolist() == [1, 2]
    assert parse({"user_id": 1, "k": 3}).ks.tolist() == [3]


@pytest.mark.parametrize(
    ("k_values", "message"),
    [
        ([3, 1.5], "row 1: k must be an integer, got 1.5"),
        ([10.0], "row 0: k must be an integer, got 10.0"),  # floats are refused, not truncated
        ([3, "4"], 'row 1: k must be an integer, got "4"'),
        ([3, None], "row 1: k is missing (null)"),
        ([3, float("nan")], "row 1: k is missing (null)"),
        ([True], "row 0: k must be an integer, got true"),
        ([3, [4]], "row 1: k must be an integer, got [4]"),
        ([3, 0], "row 1: k must be a positive integer, got 0"),
        ([-2], "row 0: k must be a positive integer, got -2"),
        ([2**70], "row 0: k is out of range"),
    ],
)
def test_bad_k_names_the_row_and_the_value(k_values, message):
    frame = pd.DataFrame({"user_id": list(range(len(k_values))), "k": pd.Series(k_values, dtype=object)})
    with pytest.raises(RequestError, match=re.escape(message)):
        parse(frame)


def test_a_float_column_points_at_the_fractional_row():
    # what the scoring server builds from JSON rows [[1, 10], [2, 10.5]]
    with pytest.raises(RequestError, match="row 1: k must be an integer, got 10.5"):
        parse(pd.DataFrame({"user_id": [1, 2], "k": [10, 10.5]}))


@pytest.mark.parametrize(("user_id", "shown"), [(1.5, "1.5"), ("7", '"7"'), (None, None), (False, "false")])
def test_bad_user_ids_are_refused(user_id, shown):
    frame = pd.DataFrame({"user_id": pd.Series([1, user_id], dtype=object), "k": [1, 1]})
    expected = (
        "row 1: user_id is missing" if shown is None else f"row 1: user_id must be an integer, got {shown}"
    )
    with pytest.raises(RequestError, match=expected):
        parse(frame)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"user_id": [1]}), "missing column\\(s\\) k; send columns user_id and k"),
        (pd.DataFrame({"a": [1]}), "missing column\\(s\\) user_id, k"),
        (pd.DataFrame({"user_id": [], "k": []}), "the request has no rows"),
        (pd.DataFrame({"user_id": range(6), "k": [1] * 6}), "has 6 rows; at most 5 are allowed"),
        (pd.DataFrame([[1, 2, 3]], columns=["user_id", "k", "k"]), "column\\(s\\) k appear more than once"),
        ([[1, 2]], "expected a table with columns user_id and k, got list"),
    ],
)
def test_request_shape_problems(frame, message):
    with pytest.raises(RequestError, match=message):
        parse(frame)


def test_response_size_counts_k_after_the_clamp():
    many = RequestLimits(max_rows=10, max_response_items=100)
    parse(pd.DataFrame({"user_id": [1, 2, 3], "k": [10**9, 10**9, 10**9]}), many)  # 3 x 30 movies
    with pytest.raises(RequestError, match="asks for 120 recommendations in all .* at most 100"):
        parse(pd.DataFrame({"user_id": [1, 2, 3, 4], "k": [10**9] * 4}), many)


def test_python_api_checks():
    assert check_k(np.int32(4)) == 4
    for bad in (0, -1, 2.0, "3", True, None):
        with pytest.raises(RequestError, match="k must be a positive integer"):
            check_k(bad)
    assert user_id_array([3, np.int64(4)]).tolist() == [3, 4]
    assert user_id_array(np.array([5, 6], dtype=np.uint8)).tolist() == [5, 6]
    assert user_id_array([]).tolist() == []
    with pytest.raises(RequestError, match="row 1: user_id must be an integer, got 1.5"):
        user_id_array([1, 1.5])  # reported where it is, not upcast to floats at row 0
    assert k_array(3, 2).tolist() == [3, 3] and k_array([1, 2], 2).tolist() == [1, 2]
    with pytest.raises(RequestError, match="got 1 values of k for 2 users"):
        k_array([1], 2)


def test_mapping_requests_keep_each_value_as_sent():
    with pytest.raises(RequestError, match='row 1: user_id must be an integer, got "2"'):
        parse({"user_id": [1, "2"], "k": [3, 3]})  # not turned into strings "1", "2" by numpy
    with pytest.raises(RequestError, match="row 1: k is missing"):
        parse({"user_id": [1, 2], "k": [3]})
    assert parse({"user_id": np.array([4, 5]), "k": 2}).ks.tolist() == [2, 2]
    assert parse({"user_id": np.array(3), "k": 2}).user_ids.tolist() == [3]  # {"inputs": {...}} scalars
    with pytest.raises(RequestError, match="column user_id must be a list of values"):
        parse({"user_id": np.array([[1, 2]]), "k": 2})


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        # what {"inputs": {...}} requests with a JSON object for a column arrive as
        (
            {"user_id": np.array({}, dtype=object), "k": np.array([1])},
            "column user_id must be a list of values, got {}",
        ),
        (
            {"user_id": np.array(1e308), "k": np.array({}, dtype=object)},
            "column k must be a list of values, got {}",
        ),
        (
            {"user_id": np.array(-1), "k": np.array({"k": -1}, dtype=object)},
            'column k must be a list of values, got {"k": -1}',
        ),
        ({"user_id": [1], "k": {"a": 1}}, "column k must be a list of values"),
        ({"user_id": np.array(1e308), "k": np.array(3)}, "row 0: user_id must be an integer, got 1e+308"),
    ],
)
def test_an_object_for_a_column_is_refused_not_read_as_its_keys(request_, message):
    with pytest.raises(RequestError, match=re.escape(message)):
        parse(request_)


def test_checked_int64_arrays_pass_through_the_python_api_unchanged():
    ids, ks = np.array([3, 1], dtype=np.int64), np.array([2, 5], dtype=np.int64)
    assert user_id_array(ids) is ids and k_array(ks, 2) is ks
    with pytest.raises(RequestError, match="row 1: k must be a positive integer, got 0"):
        k_array(np.array([2, 0], dtype=np.int64), 2)


def test_a_history_column_gives_one_history_per_row():
    frame = pd.DataFrame({"user_id": [1, 2, 3], "k": [5, 5, 5], "history": [[296, 318], None, []]})
    rows = LIMITS.parse(frame, n_items=100)
    assert [None if h is None else h.tolist() for h in rows.histories] == [[296, 318], None, []]
    assert LIMITS.parse(frame.drop(columns="history"), n_items=100).histories is None


def test_history_mappings_as_inputs_requests_arrive():
    # {"inputs": {...}}: MLflow wraps each value in an array; equal-length histories become a matrix.
    several = {"user_id": np.array([1, 2]), "k": np.array([3, 3]), "history": np.array([[10, 20], [30, 40]])}
    assert [h.tolist() for h in LIMITS.parse(several, n_items=100).histories] == [[10, 20], [30, 40]]
    # One user with scalars: a flat list is that user's history, not one row per movie.
    one = {"user_id": np.array(7), "k": np.array(3), "history": np.array([10, 20, 30])}
    rows = LIMITS.parse(one, n_items=100)
    assert rows.user_ids.tolist() == [7] and [h.tolist() for h in rows.histories] == [[10, 20, 30]]


def test_history_limits_and_types_name_the_row():
    limits = RequestLimits(max_rows=10, max_response_items=1000, max_history_items=3)
    long = pd.DataFrame({"user_id": [1, 2], "k": [1, 1], "history": [[1], [1, 2, 3, 4]]})
    with pytest.raises(RequestError, match="row 1: history holds 4 movies; at most 3 are allowed"):
        limits.parse(long, n_items=100)
    scalar = pd.DataFrame({"user_id": [1], "k": [1], "history": [296]})
    with pytest.raises(RequestError, match="row 0: history must be a list of movieIds, got 296"):
        limits.parse(scalar, n_items=100)
