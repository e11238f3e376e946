"""Fresh histories over HTTP: the real ``mlflow models serve`` with a sequence tower's package.

Each request form the README documents is sent for real, and each answer must equal the core's.
"""

from __future__ import annotations

import json
import os

import pytest
import requests
from answers import assert_same_answers
from support import VENV_BIN, free_port, running_server

from two_tower_recsys.inference.packaging import package_model
from two_tower_recsys.inference.recommender import Recommender
from two_tower_recsys.settings import InferConfig

pytestmark = pytest.mark.slow

LEAKS = ("Traceback", "stack_trace", 'File "', "/work/", "site-packages", "/tmp/", "/home/")
UNKNOWN_MOVIE = 99_999


@pytest.fixture(scope="module")
def core(sequence_index_dir) -> Recommender:
    return Recommender.from_artifacts(sequence_index_dir)


@pytest.fixture(scope="module")
def server(sequence_index_dir, tmp_path_factory):
    package = tmp_path_factory.mktemp("sequence-package") / "mlflow_model"
    package_model(sequence_index_dir, package, InferConfig(max_history_items=50))
    port = free_port()
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", str(package), "-p", str(port)]
    url = f"http://127.0.0.1:{port}"
    with running_server(
        [*command, "--host", "127.0.0.1", "--env-manager", "local"], package.parent, f"{url}/ping", env=env
    ):
        yield url


def post(server: str, body: object, content_type: str = "application/json") -> requests.Response:
    data = body if isinstance(body, str) else json.dumps(body)
    return requests.post(
        f"{server}/invocations", data=data, headers={"Content-Type": content_type}, timeout=30
    )


def expected(core: Recommender, user_ids, ks, histories) -> list[dict]:
    return json.loads(json.dumps([a.as_dict() for a in core.recommend(user_ids, ks, histories=histories)]))


def assert_answers(response: requests.Response, answers: list[dict]) -> None:
    assert response.status_code == 200, response.text[:500]
    got = response.json()["predictions"]
    assert [{k: v for k, v in a.items() if k != "recommendations"} for a in got] == [
        {k: v for k, v in a.items() if k != "recommendations"} for a in answers
    ]
    assert_same_answers(got, answers)


def test_dataframe_records_mix_rows_with_and_without_a_history(server, core):
    records = [
        {"user_id": 0, "k": 10, "history": [3, 14, 15, UNKNOWN_MOVIE]},
        {"user_id": 5, "k": 4},
        {"user_id": 6, "k": 5, "history": [UNKNOWN_MOVIE]},
    ]
    answers = expected(core, [0, 5, 6], [10, 4, 5], [[3, 14, 15, UNKNOWN_MOVIE], None, [UNKNOWN_MOVIE]])
    assert answers[0]["unknown_history_items"] == 1 and answers[2]["fallback"] is True
    assert "unknown_history_items" not in answers[1]
    assert_answers(post(server, {"dataframe_records": records}), answers)


def test_dataframe_split_with_a_history_column(server, core):
    body = {
        "dataframe_split": {"columns": ["user_id", "k", "history"], "data": [[7, 6, [1, 2]], [8, 3, [9]]]}
    }
    assert_answers(post(server, body), expected(core, [7, 8], [6, 3], [[1, 2], [9]]))


def test_inputs_form_for_one_user_and_for_several(server, core):
    one = {"inputs": {"user_id": 0, "k": 10, "history": [296, 3, 4]}}
    assert_answers(post(server, one), expected(core, [0], [10], [[296, 3, 4]]))
    several = {"inputs": {"user_id": [1, 2], "k": [3, 3], "history": [[5, 6], [7, 8]]}}
    assert_answers(post(server, several), expected(core, [1, 2], [3, 3], [[5, 6], [7, 8]]))


def test_inputs_form_with_histories_of_different_lengths_is_a_clean_400(server):
    """MLflow's own parser turns each `inputs` column into one array, which ragged lists cannot be."""
    response = post(server, {"inputs": {"user_id": [1, 2], "k": [3, 3], "history": [[5, 6], [7]]}})
    assert response.status_code == 400
    assert not [leak for leak in LEAKS if leak in response.text]


BAD_HISTORIES = {
    "not a list": (
        {"dataframe_records": [{"user_id": 1, "k": 3, "history": 296}]},
        "row 0: history must be a list of movieIds, got 296",
    ),
    "a string": (
        {"dataframe_records": [{"user_id": 1, "k": 3, "history": "296,318"}]},
        "row 0: history must be a list of movieIds",
    ),
    "an object": (
        {"dataframe_records": [{"user_id": 1, "k": 3, "history": {"a": 1}}]},
        "row 0: history must be a list of movieIds",
    ),
    "a float id": (
        {"dataframe_records": [{"user_id": 1, "k": 3, "history": [1, 2.5]}]},
        "row 0: history[1] must be an integer movieId, got 2.5",
    ),
    "a string id": (
        {"dataframe_records": [{"user_id": 1, "k": 3, "history": [1, "7"]}]},
        "row 0: history[1] must be an integer movieId",
    ),
    "a null id": (
        {"dataframe_records": [{"user_id": 1, "k": 3, "history": [None]}]},
        "row 0: history[0] must be an integer movieId, got null",
    ),
    "a huge id": (
        {"dataframe_records": [{"user_id": 1, "k": 3, "history": [2**70]}]},
        "row 0: history holds a movieId out of range",
    ),
    "too long": (
        {"dataframe_records": [{"user_id": 1, "k": 3, "history": list(range(51))}]},
        "row 0: history holds 51 movies; at most 50 are allowed",
    ),
    "second row": (
        {
            "dataframe_records": [
                {"user_id": 1, "k": 3, "history": [1]},
                {"user_id": 2, "k": 3, "history": [[1]]},
            ]
        },
        "row 1: history must be a list of movieIds",
    ),
    "csv": ("user_id,k,history\n1,3,[1 2]\n", "row 0: history must be a list of movieIds"),
}


@pytest.mark.parametrize("case", BAD_HISTORIES, ids=list(BAD_HISTORIES))
def test_bad_histories_are_clean_400s_naming_the_problem(server, case):
    body, problem = BAD_HISTORIES[case]
    response = post(server, body, "text/csv" if isinstance(body, str) else "application/json")
    assert response.status_code == 400, response.text[:500]
    assert problem in response.json()["detail"]
    assert not [leak for leak in LEAKS if leak in response.text]
