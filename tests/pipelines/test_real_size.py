"""The commands at ML-20M's shape, every answer checked against brute force.

An ML-20M-sized random index (138,493 users x 27,278 movies x 64, ~70 positives and ~30 other
ratings per user: fewer than ML-20M's ~74, to keep CI short) is served by the real commands:
`two-tower infer` at k = 10, 50, 100 and 500,
`two-tower recommend-all`, and `two-tower serve` answering requests the package's answer table
does not hold (k past it, unknown users). The reference ranks every movie in float64 (numpy),
every rated movie hidden (`exclude=rated`, the default), and answers must be its top-k within
tests/answers.py's tolerance. recommend-all's rows are all checked for rated movies and order;
1,000 seeded users' lists are ranked against brute force.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import pytest
import requests
from answers import tolerance
from random_index import ML20M_MOVIES, ML20M_USERS, write_random_index
from support import VENV_BIN, free_port, run_cli, running_server

from two_tower_recsys.artifacts.store import load_index

pytestmark = pytest.mark.slow

RECOMMEND_ALL_CHECKED_USERS = 1_000  # ranked against brute force; every row is checked for exclusions


@pytest.fixture(scope="module")
def ml20m_index(tmp_path_factory):
    artifacts = tmp_path_factory.mktemp("ml20m") / "artifacts"
    write_random_index(
        artifacts,
        n_users=ML20M_USERS,
        n_items=ML20M_MOVIES,
        mean_positives=70,
        mean_other_ratings=30,
        seed=20,
    )
    return artifacts


@pytest.fixture(scope="module")
def reference(ml20m_index):
    index = load_index(ml20m_index)
    items = index.item_embeddings.double().numpy()
    users = index.user_embeddings.double().numpy()

    def top(user_id: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The brute-force (movieIds, float64 scores) of a known user's top-k, rated movies hidden."""
        user = user_id - 1  # ids 1..n_users in order
        scores = items @ users[user] / index.temperature
        scores[index.rated.items_of(user).numpy()] = -np.inf
        order = np.lexsort((np.arange(len(scores)), -scores))[:k]
        return index.item_ids[order], scores

    top.index = index
    return top


def assert_brute_force_top_k(got: list[tuple[int, float]], user_id: int, k: int, reference) -> None:
    expected, scores = reference(user_id, k)
    assert len(got) == k, (user_id, k)
    movies = np.array([movie for movie, _ in got])
    got_scores = np.array([score for _, score in got])
    assert len(set(movies.tolist())) == k and np.all(np.isfinite(scores[movies - 1])), (
        user_id,
        "hidden movie",
    )
    assert np.all(np.abs(got_scores - scores[movies - 1]) <= tolerance(scores[movies - 1])), user_id
    assert np.all(np.diff(got_scores) <= 0), (user_id, "not best first")
    # Movies may differ from the reference only at the cut, within the tolerance.
    cut = scores[expected[-1] - 1]
    for movie in set(movies.tolist()) ^ set(expected.tolist()):
        assert abs(scores[movie - 1] - cut) <= 2 * tolerance(cut), (user_id, k, movie)


INFER_KS = (10, 50, 100, 500)


@pytest.fixture(scope="module")
def infer_results(ml20m_index, tmp_path_factory) -> dict[int, subprocess.CompletedProcess]:
    """`two-tower infer` at each k of ``INFER_KS`` (user 7 + k), the commands run side by side:
    each is mostly its own interpreter's start-up, one core's work."""
    with ThreadPoolExecutor(len(INFER_KS)) as pool:
        runs = {
            k: pool.submit(
                run_cli,
                ["infer", f"paths.artifacts_dir={ml20m_index}", f"infer.user_id={7 + k}", f"infer.k={k}"],
                tmp_path_factory.mktemp(f"infer-{k}"),
            )
            for k in INFER_KS
        }
        return {k: run.result() for k, run in runs.items()}


@pytest.mark.parametrize("k", INFER_KS)
def test_infer_at_ml20m_size_is_the_brute_force_top_k(infer_results, reference, k):
    user_id = 7 + k  # any user; distinct per k
    result = infer_results[k]
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout)
    assert (answer["user_id"], answer["k"], answer["fallback"]) == (user_id, k, False)
    assert_brute_force_top_k([(m, s) for m, s, _ in answer["recommendations"]], user_id, k, reference)


def test_recommend_all_at_ml20m_size_is_the_brute_force_top_k(ml20m_index, reference, tmp_path):
    output = tmp_path / "all.parquet"
    k = 100
    result = run_cli(
        [
            "recommend-all",
            f"paths.artifacts_dir={ml20m_index}",
            f"paths.recommendations={output}",
            f"infer.k={k}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = pl.read_parquet(output)
    index = reference.index
    assert table.height == ML20M_USERS * k  # every user has far more than k unrated movies
    users = table.get_column("user_id").to_numpy()
    assert np.array_equal(users, np.repeat(np.arange(1, ML20M_USERS + 1), k))
    assert np.array_equal(table.get_column("rank").to_numpy(), np.tile(np.arange(1, k + 1), ML20M_USERS))
    # No row recommends a rated movie: every (user, movie) key against the rated pairs.
    keys = (users - 1) * ML20M_MOVIES + table.get_column("movieId").to_numpy() - 1
    rated = index.rated
    rated_users = np.repeat(np.arange(rated.n_users), np.diff(rated.indptr.numpy()))
    assert not np.isin(keys, rated_users * ML20M_MOVIES + rated.indices.numpy()).any()
    checked = np.random.default_rng(0).choice(ML20M_USERS, RECOMMEND_ALL_CHECKED_USERS, replace=False) + 1
    movies, scores = table.get_column("movieId").to_numpy(), table.get_column("score").to_numpy()
    for user_id in checked.tolist():
        rows = slice((user_id - 1) * k, user_id * k)
        got = list(zip(movies[rows].tolist(), scores[rows].tolist(), strict=True))
        assert_brute_force_top_k(got, user_id, k, reference)


def test_serve_at_ml20m_size_answers_past_the_answer_table_as_brute_force(ml20m_index, reference, tmp_path):
    package = tmp_path / "mlflow_model"
    packaged = run_cli(
        ["package-mlflow", f"paths.artifacts_dir={ml20m_index}", f"paths.mlflow_model_dir={package}"],
        tmp_path,
    )
    assert packaged.returncode == 0, packaged.stderr[-2000:]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(VENV_BIN / "two-tower"),
        "serve",
        f"paths.artifacts_dir={ml20m_index}",
        f"serve.model={package}",
        f"serve.port={port}",
        "serve.workers=1",
    ]
    rows = [[11, 150], [12, 500], [13, 101], [10**7, 120], [14, 1], [15, 2_000]]
    with running_server(command, tmp_path, f"{url}/ping"):
        body = {"dataframe_split": {"columns": ["user_id", "k"], "data": rows}}
        response = requests.post(f"{url}/invocations", json=body, timeout=120)
        assert response.status_code == 200, response.text[:500]
        predictions = response.json()["predictions"]
        alone = requests.post(f"{url}/invocations", json={"inputs": {"user_id": 16, "k": 333}}, timeout=120)
        assert alone.status_code == 200, alone.text[:500]
    popularity = reference.index.popularity
    for (user_id, k), answer in zip(rows, predictions, strict=True):
        assert (answer["user_id"], answer["k"]) == (user_id, k)
        got = [(movie, score) for movie, score, _ in answer["recommendations"]]
        if user_id > ML20M_USERS:  # unknown: the popularity ranking, ties in catalogue order
            assert answer["fallback"] is True
            order = np.lexsort((np.arange(len(popularity)), -popularity))[:k]
            assert got == [(int(reference.index.item_ids[i]), float(popularity[i])) for i in order]
        else:
            assert answer["fallback"] is False
            assert_brute_force_top_k(got, user_id, k, reference)
    (answer,) = alone.json()["predictions"]
    assert_brute_force_top_k([(m, s) for m, s, _ in answer["recommendations"]], 16, 333, reference)
