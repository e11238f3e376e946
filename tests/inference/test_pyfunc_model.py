"""The packaged model through ``mlflow.pyfunc.load_model``: same answers as the core, clean errors."""

import shutil
from concurrent.futures import ThreadPoolExecutor

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import yaml
from answers import assert_same_answer, assert_same_answers
from mlflow.exceptions import MlflowException

from two_tower_recsys.inference.recommender import Recommender


@pytest.fixture(scope="module")
def model(packaged_model):
    return mlflow.pyfunc.load_model(str(packaged_model))


@pytest.fixture(scope="module")
def core(random_index_dir):
    return Recommender.from_artifacts(random_index_dir)


def test_one_answer_per_row_in_order_equal_to_the_core(model, core):
    request = pd.DataFrame({"user_id": [5, 123456, 1, 5], "k": [3, 2, 10, 1]})
    answers = model.predict(request)
    expected = [
        core.recommend([user], k)[0].as_dict() for user, k in zip(request.user_id, request.k, strict=True)
    ]
    assert [a["user_id"] for a in answers] == [5, 123456, 1, 5]
    assert [a["fallback"] for a in answers] == [False, True, False, False]
    assert [[m for m, _, _ in a["recommendations"]] for a in answers] == [
        [m for m, _, _ in e["recommendations"]] for e in expected
    ]
    assert answers[1] == expected[1]  # the fallback is exact: no floating point involved
    assert answers[0]["recommendations"][0][1] == pytest.approx(expected[0]["recommendations"][0][1])


def test_dict_input_and_k_clamp(model, core):
    (answer,) = model.predict({"user_id": [7], "k": [10**9]})
    assert answer["k"] == core.n_items
    assert len(answer["recommendations"]) == core.n_items - len(core.index.rated.items_of(6))


@pytest.mark.parametrize(
    ("request_table", "message"),
    [
        (pd.DataFrame({"user_id": [1, 2], "k": [3, 1.5]}), "row 1: k must be an integer, got 1.5"),
        (pd.DataFrame({"user_id": ["1"], "k": [3]}), 'row 0: user_id must be an integer, got "1"'),
        (pd.DataFrame({"user_id": [1], "k": [0]}), "row 0: k must be a positive integer, got 0"),
        (pd.DataFrame({"user_id": [1]}), "missing column(s) k"),
        (pd.DataFrame({"user_id": [], "k": []}), "the request has no rows"),
        # Not a table at all ({"inputs": 173} over HTTP): neither a user nor a similar-movies request.
        (173, "expected a table with columns user_id and k"),
        (np.array(173), "expected a table with columns user_id and k"),
    ],
)
def test_bad_requests_are_invalid_parameter_errors(model, request_table, message):
    with pytest.raises(MlflowException) as caught:
        model.predict(request_table)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert caught.value.get_http_status_code() == 400
    assert message in caught.value.message
    assert "stack_trace" not in caught.value.serialize_as_json()


def test_limits_and_filtering_come_from_model_config(packaged_model):
    strict = mlflow.pyfunc.load_model(str(packaged_model), model_config={"max_request_rows": 2})
    with pytest.raises(MlflowException, match="has 3 rows; at most 2 are allowed"):
        strict.predict(pd.DataFrame({"user_id": [1, 2, 3], "k": [1, 1, 1]}))
    core = Recommender.from_artifacts(packaged_model / "artifacts" / "index")
    for exclude in ("none", "positives"):
        unfiltered = mlflow.pyfunc.load_model(str(packaged_model), model_config={"exclude": exclude})
        (answer,) = unfiltered.predict(pd.DataFrame({"user_id": [4], "k": [300]}))
        expected = core.recommend([4], 300, exclude=exclude)[0]
        assert [m for m, _, _ in answer["recommendations"]] == [m for m, _, _ in expected.recommendations]
    # positives leaves in what the user rated below the threshold; the default does not
    assert len(expected.recommendations) > len(core.recommend([4], 300)[0].recommendations)


def test_a_package_recording_an_unknown_key_is_refused_naming_it(packaged_model, tmp_path):
    """MLflow itself drops unknown keys given at load time; a package's own MLmodel is checked."""
    edited = tmp_path / "edited_package"
    shutil.copytree(packaged_model, edited)
    mlmodel = yaml.safe_load((edited / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"]["config"]["colour"] = "red"
    (edited / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(ValueError, match=r"unknown model_config key\(s\): colour"):
        mlflow.pyfunc.load_model(str(edited))


def test_an_unexpected_failure_is_a_clean_500(packaged_model, monkeypatch):
    model = mlflow.pyfunc.load_model(str(packaged_model))
    recommender = model.unwrap_python_model().recommender

    def broken(*args, **kwargs):
        raise RuntimeError("/secret/path/file.py exploded")

    monkeypatch.setattr(recommender, "recommend", broken)
    monkeypatch.setattr(recommender, "looked_up", broken)  # the answer table's path
    with pytest.raises(MlflowException) as caught:
        model.predict(pd.DataFrame({"user_id": [1], "k": [1]}))
    assert caught.value.get_http_status_code() == 500
    assert caught.value.message == "internal error while recommending"
    assert "secret" not in caught.value.serialize_as_json()


def test_the_structs_format_carries_the_same_answer_for_spark(model, core):
    (triples,) = model.predict({"user_id": [5], "k": [4]})
    (structs,) = model.predict({"user_id": [5], "k": [4]}, params={"recommendation_format": "structs"})
    assert structs["recommendations"] == [
        {"movieId": movie_id, "score": score, "title": title}
        for movie_id, score, title in triples["recommendations"]
    ]
    with pytest.raises(MlflowException, match="recommendation_format must be one of triples, structs"):
        model.predict({"user_id": [5], "k": [4]}, params={"recommendation_format": "csv"})


def test_concurrent_requests_are_answered_as_alone(model, core):
    """The scoring server calls predict from several threads at once: each answer is its own."""
    users = [1 + (7 * n) % 260 for n in range(64)]  # ids above 200: unknown, the fallback
    # k past the package's answer table (100): computed
    requests = [pd.DataFrame({"user_id": [user], "k": [95 + n % 9]}) for n, user in enumerate(users)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(model.predict, requests))
    for answer, request in zip(answers, requests, strict=True):
        user, k = int(request.user_id[0]), int(request.k[0])
        assert_same_answers(answer, core.recommend([user], k))


def test_requests_the_answer_table_holds_are_looked_up(model, core, monkeypatch):
    recommender = model.unwrap_python_model().recommender
    (past_the_table,) = model.predict(pd.DataFrame({"user_id": [5], "k": [101]}))
    assert_same_answer(past_the_table, core.recommend([5], 101)[0])

    def no_scoring(*args, **kwargs):
        raise AssertionError("scored, not looked up")

    monkeypatch.setattr(recommender, "top_items", no_scoring)
    (answer,) = model.predict(pd.DataFrame({"user_id": [5], "k": [4]}))
    assert_same_answer(answer, core.recommend([5], 4)[0])
