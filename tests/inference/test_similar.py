"""Similar movies: known answers, a brute-force differential check, the pyfunc model and the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl
import pytest
import requests
import torch
from answers import tolerance
from mlflow.exceptions import MlflowException
from support import VENV_BIN, free_port, run_cli, running_server

from two_tower_recsys.artifacts.store import load_index, write_index
from two_tower_recsys.errors import RequestError
from two_tower_recsys.inference.packaging import package_model
from two_tower_recsys.inference.similar import SimilarMovieFinder
from two_tower_recsys.pipelines import similar_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings, report_user_errors
from two_tower_recsys.settings import InferConfig

# Movie 30 points along (1, 1). Movie 60 has a huge norm (a blockbuster) about 42 degrees from
# it, movie 70 almost the same direction with a small norm: by dot product 60 would come first
# (10.5 against 2.2), by cosine 70 does (0.996 against 0.742). Movie 50 points the opposite way.
# No two cosines tie, so the order does not hang on the last bits of a sum.
MOVIE_VECTORS = {
    10: [1.0, 0.0, 0.0],
    20: [0.0, 0.0, 5.0],
    30: [1.0, 1.0, 0.0],
    40: [2.0, 2.1, 0.0],
    50: [-1.0, -1.0, 0.0],
    60: [0.5, 10.0, 0.0],
    70: [1.0, 1.2, 0.0],
}


def title(movie_id: int) -> str:
    return f"Movie {movie_id} (1999)"


def write_vector_index(directory: Path) -> Path:
    movie_ids = list(MOVIE_VECTORS)
    write_index(
        directory,
        checkpoint=None,
        user_embeddings=torch.zeros(1, 3),
        item_embeddings=torch.tensor(list(MOVIE_VECTORS.values())),
        temperature=1.0,
        user_ids=np.array([1]),
        item_ids=np.array(movie_ids),
        titles=pl.DataFrame(
            {
                "item_idx": range(len(movie_ids)),
                "movieId": movie_ids,
                "title": [title(m) for m in movie_ids],
                "genres": ["Drama"] * len(movie_ids),
            }
        ),
        seen_pairs=pl.DataFrame({"user_idx": [0], "item_idx": [0]}),
        popularity=np.ones(len(movie_ids), dtype=np.int64),
        provenance={"dataset": {"name": "vectors"}},
    )
    return directory


@pytest.fixture(scope="module")
def vector_index(tmp_path_factory) -> Path:
    return write_vector_index(tmp_path_factory.mktemp("similar") / "artifacts")


@pytest.fixture(scope="module")
def finder(vector_index) -> SimilarMovieFinder:
    return SimilarMovieFinder(load_index(vector_index))


def cos(a: int, b: int) -> float:
    x, y = np.array(MOVIE_VECTORS[a]), np.array(MOVIE_VECTORS[b])
    return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))


def test_neighbours_rank_by_direction_not_norm_and_exclude_the_movie(finder):
    [answer] = finder.similar([30], 7)
    assert answer.k == 6  # clamped to the rest of the catalogue: the movie itself is never listed
    assert [movie for movie, _, _ in answer.similar] == [40, 70, 60, 10, 20, 50]
    for movie, score, movie_title in answer.similar:
        assert abs(score - cos(30, movie)) <= tolerance(cos(30, movie))
        assert movie_title == title(movie)
    assert answer.as_dict()["title"] == title(30)


def test_each_row_gets_its_own_k_in_the_order_asked(finder):
    answers = finder.similar([70, 10, 70], [1, 2, 3])
    assert [(a.movie_id, a.k) for a in answers] == [(70, 1), (10, 2), (70, 3)]
    assert [m for m, _, _ in answers[0].similar] == [40]
    assert [m for m, _, _ in answers[1].similar] == [30, 40]
    assert [m for m, _, _ in answers[2].similar] == [40, 30, 60]


@pytest.mark.parametrize(
    ("movie_ids", "k", "message"),
    [
        ([10, 999], 3, "row 1: movie_id 999 is not in the catalogue"),
        ([10, 1.5], 3, "row 1: movie_id must be an integer, got 1.5"),
        ([10], 0, "k must be a positive integer, got 0"),
    ],
)
def test_bad_queries_are_one_line_request_errors(finder, movie_ids, k, message):
    with pytest.raises(RequestError, match=message):
        finder.similar(movie_ids, k)


def test_every_movie_of_a_random_index_matches_brute_force(random_index_dir):
    """All 300 movies at once (several score chunks' worth of code path) against NumPy's cosine."""
    index = load_index(random_index_dir)
    vectors = index.item_embeddings.double().numpy()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = unit @ unit.T
    np.fill_diagonal(expected, -np.inf)
    answers = SimilarMovieFinder(index).similar(index.item_ids, 20)
    for row, answer in enumerate(answers):
        got_items = [int(np.flatnonzero(index.item_ids == m)[0]) for m, _, _ in answer.similar]
        assert row not in got_items
        best = np.sort(expected[row])[::-1][:20]
        got_scores = np.array([score for _, score, _ in answer.similar])
        assert np.all(np.abs(got_scores - best) <= 1e-5 * np.abs(best) + 1e-5)
        # each listed movie really has the score listed (no movie swapped for another)
        assert np.all(np.abs(expected[row, got_items] - got_scores) <= 1e-5 * np.abs(got_scores) + 1e-5)


def test_the_cli_entry_prints_json_and_unknown_movies_are_one_line(vector_index, capsys):
    settings = compose_settings([f"paths.artifacts_dir={vector_index}", "infer.movie_id=10", "infer.k=2"])
    assert report_user_errors(lambda: similar_pipeline.run(settings)) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["movie_id"] == 10 and answer["k"] == 2
    assert [row[0] for row in answer["similar"]] == [30, 40]  # cosines 0.707 and 0.690
    settings = compose_settings([f"paths.artifacts_dir={vector_index}", "infer.movie_id=11"])
    assert report_user_errors(lambda: similar_pipeline.run(settings)) == 2
    assert capsys.readouterr().err.strip() == "error: row 0: movie_id 11 is not in the catalogue"


@pytest.fixture(scope="module")
def packaged(vector_index, tmp_path_factory) -> Path:
    destination = tmp_path_factory.mktemp("similar-package") / "mlflow_model"
    package_model(vector_index, destination, InferConfig())
    return destination


def test_the_pyfunc_model_answers_a_movie_id_column(packaged, finder):
    model = mlflow.pyfunc.load_model(str(packaged))
    answers = model.predict(pd.DataFrame({"movie_id": [30, 10], "k": [2, 1]}))
    assert [a["movie_id"] for a in answers] == [30, 10]
    assert [[row[0] for row in a["similar"]] for a in answers] == [[40, 70], [30]]
    assert answers[0] == finder.similar([30], 2)[0].as_dict()
    with pytest.raises(MlflowException) as caught:
        model.predict(pd.DataFrame({"movie_id": [30, 31], "k": [2, 1]}))
    assert caught.value.get_http_status_code() == 400
    assert "row 1: movie_id 31 is not in the catalogue" in caught.value.message


@pytest.mark.slow
def test_similar_movies_through_the_cli_and_two_tower_serve(vector_index, packaged, tmp_path):
    result = run_cli(
        ["similar", f"paths.artifacts_dir={vector_index}", "infer.movie_id=30", "infer.k=1"], tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["similar"] == [[40, pytest.approx(cos(30, 40), abs=1e-5), title(40)]]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [str(VENV_BIN / "two-tower"), "serve", f"serve.model={packaged}", f"serve.port={port}"]
    with running_server(command, tmp_path, f"{url}/ping", env=env):
        body = {"dataframe_split": {"columns": ["movie_id", "k"], "data": [[30, 2]]}}
        response = requests.post(f"{url}/invocations", json=body, timeout=30)
        assert response.status_code == 200, response.text[:500]
        [answer] = response.json()["predictions"]
        assert [row[0] for row in answer["similar"]] == [40, 70]
        body = {"dataframe_split": {"columns": ["movie_id", "k"], "data": [[31, 2]]}}
        response = requests.post(f"{url}/invocations", json=body, timeout=30)
        assert response.status_code == 400
        assert "row 0: movie_id 31 is not in the catalogue" in response.json()["message"]
        assert "Traceback" not in response.text
