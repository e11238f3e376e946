"""``mlflow models serve`` for real: the packaged model over HTTP on a free loopback port."""

from __future__ import annotations

import json
import os
import time

import pytest
import requests
from answers import assert_same_answer, assert_same_answers
from support import VENV_BIN, free_port, running_server

from two_tower_recsys.inference.recommender import Recommender

pytestmark = pytest.mark.slow

JSON_HEADERS = {"Content-Type": "application/json"}
LEAKS = ("Traceback", "stack_trace", 'File "', "/work/", "site-packages", "/tmp/", "/home/")


@pytest.fixture(scope="module")
def server(packaged_model, tmp_path_factory):
    """The server runs from an unrelated directory: the package must not rely on the cwd."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    port = free_port()
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # uvicorn
    started = time.monotonic()
    command = ["models", "serve", "-m", str(packaged_model), "-p", str(port), "--host", "127.0.0.1"]
    url = f"http://127.0.0.1:{port}"
    with running_server(
        [str(VENV_BIN / "mlflow"), *command, "--env-manager", "local"], elsewhere, f"{url}/ping", env=env
    ):
        print(f"mlflow models serve answered /ping after {time.monotonic() - started:.1f} s")
        yield url


@pytest.fixture(scope="module")
def core(random_index_dir) -> Recommender:
    return Recommender.from_artifacts(random_index_dir)


def invoke(server: str, body: str | bytes, content_type: str = "application/json") -> requests.Response:
    headers = {"Content-Type": content_type}
    return requests.post(f"{server}/invocations", data=body, headers=headers, timeout=30)


def split(rows: list, columns: tuple[str, ...] = ("user_id", "k")) -> str:
    return json.dumps({"dataframe_split": {"columns": list(columns), "data": rows}})


def test_single_request_answers_like_the_core(server, core):
    response = invoke(server, split([[1, 10]]))
    assert response.status_code == 200
    (answer,) = response.json()["predictions"]
    assert_same_answer(answer, core.recommend([1], 10)[0].as_dict())


def test_many_rows_get_one_answer_each_in_order(server, core):
    rows = [[user, 1 + user % 7] for user in range(200, 0, -9)] + [[999_999, 4], [3, 1]]
    response = invoke(server, split(rows))
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["user_id"] for p in predictions] == [user for user, _ in rows]
    for prediction, (user, k) in zip(predictions, rows, strict=True):
        assert_same_answer(prediction, core.recommend([user], k)[0].as_dict())
    records = json.dumps({"dataframe_records": [{"user_id": u, "k": k} for u, k in rows[:3]]})
    inputs = json.dumps({"inputs": {"user_id": [u for u, _ in rows[:3]], "k": [k for _, k in rows[:3]]}})
    for other_format in (records, inputs):
        answers = invoke(server, other_format).json()["predictions"]
        for answer, by_split in zip(answers, predictions[:3], strict=True):
            assert_same_answer(answer, by_split)


def test_unknown_user_is_a_marked_popularity_fallback(server, core):
    (answer,) = invoke(server, split([[424242, 5]])).json()["predictions"]
    assert answer["fallback"] is True
    assert answer == core.recommend([424242], 5)[0].as_dict()


def test_k_above_the_catalogue_is_clamped(server, core):
    (answer,) = invoke(server, split([[2, 10**6]])).json()["predictions"]
    assert answer["k"] == core.n_items
    assert len(answer["recommendations"]) == core.n_items - len(core.index.rated.items_of(1))


BAD_REQUESTS = {
    "k zero": (split([[1, 0]]), "row 0: k must be a positive integer, got 0"),
    "k negative": (split([[1, -5]]), "row 0: k must be a positive integer, got -5"),
    "k fractional": (split([[1, 2.5]]), "row 0: k must be an integer, got 2.5"),
    "k float": (split([[1, 10.0]]), "row 0: k must be an integer, got 10.0"),
    "k string": (split([[1, "10"]]), 'row 0: k must be an integer, got \\"10\\"'),
    "k null": (split([[1, None]]), "row 0: k is missing (null)"),
    "k bool": (split([[1, True]]), "row 0: k must be an integer, got true"),
    "user float": (split([[1.5, 3]]), "row 0: user_id must be an integer, got 1.5"),
    "user string": (split([["1", 3]]), 'row 0: user_id must be an integer, got \\"1\\"'),
    "one bad row": (split([[1, 3], [2, 3.5], [3, 3]]), "row 1: k must be an integer, got 3.5"),
    "missing column": (split([[1]], ("user_id",)), "missing column(s) k"),
    "nested inputs": (json.dumps({"inputs": {"user_id": [[1, 2]], "k": 2}}), "must be a list of values"),
    "list inputs": (json.dumps({"inputs": [[1, 2]]}), "expected a table with columns user_id and k"),
    "rows wider than columns": (split([[1]]), "2 columns passed, passed data had 1 columns"),
    "malformed json": ('{"dataframe_split": {"columns": ', "valid JSON"),
    "not utf-8": (b"\xff\xfe{", "valid JSON"),
    "empty body": ("", "valid JSON"),
    "empty object": ("{}", "exactly one of the input fields"),
    "no rows": (split([]), "the request has no rows"),
    "over the row limit": (split([[1, 1]] * 10_001), "has 10001 rows; at most 10000 are allowed"),
    "too many recommendations": (split([[1, 300]] * 4_000), "at most 1000000 are allowed"),
    "history for an id tower": (
        json.dumps({"dataframe_records": [{"user_id": 1, "k": 3, "history": [1, 2]}]}),
        "history: this model's user tower is an ID embedding (model.user_tower=id)",
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_requests_are_clean_4xx(server, case):
    body, problem = BAD_REQUESTS[case]
    response = invoke(server, body)
    assert 400 <= response.status_code < 500, response.text[:500]
    text = response.text
    assert problem in text
    assert not [leak for leak in LEAKS if leak in text], text[-1000:]
    error = response.json()
    assert error["error_code"] in {"INVALID_PARAMETER_VALUE", "BAD_REQUEST"}
    if error["error_code"] == "INVALID_PARAMETER_VALUE":
        assert problem.replace('\\"', '"') in error["detail"]  # our one-line reason, undecorated


def test_wrong_content_type_is_415_and_the_server_keeps_answering(server, core):
    response = invoke(server, split([[1, 2]]), content_type="text/plain")
    assert response.status_code == 415
    for body, _ in BAD_REQUESTS.values():  # after every bad request, good ones still work
        invoke(server, body)
    response = invoke(server, split([[5, 3]]))
    assert response.status_code == 200
    assert_same_answer(response.json()["predictions"][0], core.recommend([5], 3)[0].as_dict())


def test_served_answers_equal_the_cores_for_every_user(server, core):
    """The request path (validation, DataFrame handling, scoring, top-k, seen filtering, JSON)
    changes no answer: every user of the index, some unknown ones, many k, as the core answers
    (up to summation order: tests/answers.py)."""
    users = [*range(1, 201), *range(10_000, 10_020)]
    ks = [1 + (user * 7) % 60 for user in users]
    response = invoke(server, split([[user, k] for user, k in zip(users, ks, strict=True)]))
    assert response.status_code == 200
    expected = [answer.as_dict() for answer in core.recommend(users, ks)]
    assert_same_answers(response.json()["predictions"], expected)
    with requests.Session() as session:  # one user per request, as single clients send them
        for user, k in list(zip(users, ks, strict=True))[::9]:
            body = split([[user, k]])
            answer = session.post(f"{server}/invocations", data=body, headers=JSON_HEADERS, timeout=30)
            assert_same_answers(answer.json()["predictions"], core.recommend([user], k))
