"""A movie tower that reads content, with either user tower, through the real pipelines.

Trained on tiny synthetic data with a rating threshold that keeps some catalogue movies out of
training, so the index holds movies with no id embedding (their content vector alone). Every
answer is checked against a brute force built from the checkpoint, not from the index: its movie
tower for the trained movies, its content encoder for the rest, its user tower for the users.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import onnxruntime as ort
import pandas as pd
import polars as pl
import pytest
import torch
from answers import assert_same_answer, assert_same_recommendations, tolerance
from support import TINY_SEQUENCE, TINY_SYNTHETIC, run_cli, scratch_paths

from two_tower_recsys.artifacts.store import load_index
from two_tower_recsys.inference.recommender import Recommender
from two_tower_recsys.models.components.sequence_tower import SequenceTower
from two_tower_recsys.pipelines import train_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings
from two_tower_recsys.pipelines.trained_scorers import load_checkpoint_module
from two_tower_recsys.preprocessing.histories import SERVING, histories_for
from two_tower_recsys.preprocessing.prepare import prepare_dataset
from two_tower_recsys.training.module import TwoTowerModule

pytestmark = pytest.mark.slow

CONTENT = "model.item_features=[id,genres,year,title]"
MIN_ITEM_INTERACTIONS = 40  # keeps a share of TINY_SYNTHETIC's 120 movies out of training
SEQUENCE = [
    *TINY_SEQUENCE,
    # the full softmax with both of its options: the in-batch loss is the id tower's default
    "model.negatives=full",
    "model.label_smoothing=0.1",
    "model.hide_earlier_positives=true",
]
TOWERS = {"id": [], "sequence": SEQUENCE}
K = 10


@dataclass(frozen=True)
class Trained:
    artifacts: Path
    overrides: list[str]
    module: TwoTowerModule  # the checkpoint's
    movie_vectors: torch.Tensor  # brute force: every index movie, in the index's order
    user_vectors: torch.Tensor  # brute force: every index user, in the index's order
    n_trained: int


def train(root: Path, tower_overrides: list[str]) -> list[str]:
    overrides = [
        *TINY_SYNTHETIC,
        *tower_overrides,
        CONTENT,
        f"data.min_item_interactions={MIN_ITEM_INTERACTIONS}",
        "trainer.monitor_k=10",  # below the trained movies' count (48)
        "logging.enabled=false",
        *scratch_paths(root),
    ]
    train_pipeline.run(compose_settings(overrides))
    return overrides


def raw_table(root: Path, name: str) -> pl.DataFrame:
    with zipfile.ZipFile(root / "raw/synthetic.zip") as archive:
        member = next(n for n in archive.namelist() if n.endswith(name))
        return pl.read_csv(io.BytesIO(archive.read(member)))


@pytest.fixture(scope="module", params=list(TOWERS))
def trained(request, tmp_path_factory) -> Trained:
    root = tmp_path_factory.mktemp(f"content-{request.param}")
    overrides = train(root, TOWERS[request.param])
    artifacts = root / "artifacts"
    index = load_index(artifacts)
    module = load_checkpoint_module(artifacts)
    settings = compose_settings(overrides)
    dataset = prepare_dataset(settings.data, settings.paths, progress=False)
    n_trained = dataset.n_items
    assert 0 < n_trained < index.n_items  # movies without an id embedding: the case under test
    assert (index.item_ids[:n_trained] == dataset.item_ids).all()
    movies = raw_table(root, "movies.csv")
    rest = pl.DataFrame({"movieId": index.item_ids[n_trained:]}).join(
        movies, on="movieId", how="left", maintain_order="left"
    )
    with torch.no_grad():
        movie_vectors = torch.cat(
            [module.net.item_tower.embed_all(), module.net.item_tower.content.encode(rest)]
        )
        if module.reads_histories:
            serving = histories_for(dataset, SERVING, module.net.user_tower.max_history)
            user_vectors = module.net.user_tower.embed_histories(serving.items, serving.lengths)
        else:
            user_vectors = module.net.user_tower.embed_all()
    assert (index.user_ids == dataset.user_ids).all()
    return Trained(artifacts, overrides, module, movie_vectors.detach(), user_vectors.detach(), n_trained)


def brute_force_top(trained: Trained, user_vectors: torch.Tensor, hidden: list[set[int]], k: int):
    """Best-first (movieId, score) per row over every index movie, ``hidden`` movie rows left out."""
    scores = user_vectors @ trained.movie_vectors.T / trained.module.model_config.temperature
    item_ids = load_index(trained.artifacts).item_ids
    answers = []
    for row, row_hidden in enumerate(hidden):
        order = [int(i) for i in torch.argsort(scores[row], descending=True) if int(i) not in row_hidden]
        answers.append([(int(item_ids[i]), float(scores[row, i])) for i in order[:k]])
    return answers


def test_recommend_all_is_the_brute_force_top_k_over_the_catalogue_rated_movies_hidden(trained, tmp_path):
    output = tmp_path / "all.parquet"
    result = run_cli(
        [
            "recommend-all",
            f"paths.artifacts_dir={trained.artifacts}",
            f"paths.recommendations={output}",
            f"infer.k={K}",
            "trainer.progress_bar=false",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = pl.read_parquet(output).sort("user_id", "rank")
    index = load_index(trained.artifacts)
    # Rated: every rating in ratings.csv, of any movie of the catalogue (trained or not).
    ratings = raw_table(trained.artifacts.parent, "ratings.csv")
    movie_row = {int(movie): row for row, movie in enumerate(index.item_ids)}
    rated: dict[int, set[int]] = {}
    for user, movie in ratings.select("userId", "movieId").iter_rows():
        rated.setdefault(user, set()).add(movie_row[movie])
    user_ids = [int(user) for user in index.user_ids]
    expected = brute_force_top(trained, trained.user_vectors, [rated.get(u, set()) for u in user_ids], K)
    got = {user: [] for user in user_ids}
    for user, _, movie, score in table.iter_rows():
        got[user].append((movie, score))
    # (a user who rated every catalogue movie has none left: no row)
    answered = {user for user, answer in zip(user_ids, expected, strict=True) if answer}
    assert set(table.get_column("user_id").unique().to_list()) == answered
    untrained = set(index.item_ids[trained.n_trained :].tolist())
    for user, answer in zip(user_ids, expected, strict=True):
        assert_same_recommendations(got[user], answer, user)
    # the untrained movies compete: some reach users' top-K
    assert untrained & {movie for answer in expected for movie, _ in answer}


def test_the_onnx_scorer_covers_every_catalogue_movie(trained, tmp_path):
    result = run_cli(["export-onnx", f"paths.artifacts_dir={trained.artifacts}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    index = load_index(trained.artifacts)
    temperature = trained.module.model_config.temperature
    rng = np.random.default_rng(0)
    if not trained.module.reads_histories:
        session = ort.InferenceSession(str(trained.artifacts / "model_scoring.onnx"))
        users = np.repeat(rng.integers(0, len(index.user_ids), 8), index.n_items)
        items = np.tile(np.arange(index.n_items), 8)  # the trained movies and every other one
        (scores,) = session.run(["score"], {"user_idx": users, "item_idx": items})
        expected = (trained.user_vectors[users] * trained.movie_vectors[items]).sum(1) / temperature
    else:
        session = ort.InferenceSession(str(trained.artifacts / "user_tower.onnx"))
        # histories of trained and untrained movies alike (any catalogue index)
        history = rng.integers(0, index.n_items, (64, 9), dtype=np.int64)
        history[:, 0] = rng.integers(trained.n_trained, index.n_items, 64)
        lengths = rng.integers(1, 10, 64, dtype=np.int64)
        (user_vectors,) = session.run(["user_vector"], {"history": history, "lengths": lengths})
        scores = (torch.from_numpy(user_vectors) @ trained.movie_vectors.T / temperature).numpy()
        expected = brute_force_user_vectors(trained, torch.from_numpy(history), torch.from_numpy(lengths))
        expected = expected @ trained.movie_vectors.T / temperature
    expected = expected.numpy()
    assert np.all(np.abs(scores - expected) <= np.vectorize(tolerance)(expected))


def brute_force_user_vectors(trained: Trained, history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The checkpoint's sequence tower reading the brute-force movie vectors (any catalogue movie)."""
    tower = trained.module.net.user_tower
    around = SequenceTower.from_weights(tower.shape(), trained.movie_vectors, tower.weights_without_items())
    return around.embed_histories(history, lengths)


def test_a_fresh_history_naming_untrained_movies_is_read_by_the_package_and_the_recommender(trained):
    if not trained.module.reads_histories:
        pytest.skip("an id user tower reads no history")
    index = load_index(trained.artifacts)
    untrained = index.item_ids[trained.n_trained :]
    history_rows = [2, 5, trained.n_trained, trained.n_trained + 1]  # two trained, two content-only
    history = [int(index.item_ids[row]) for row in history_rows]
    user = torch.tensor([history_rows])
    vector = brute_force_user_vectors(trained, user, torch.tensor([len(history_rows)]))
    [expected] = brute_force_top(trained, vector, [set(history_rows)], K)
    core = Recommender.from_artifacts(trained.artifacts)
    [answer] = core.recommend([-5], K, histories=[history])  # an unknown user: only the history hidden
    assert not answer.fallback and answer.unknown_history_items == 0
    assert_same_recommendations([(m, s) for m, s, _ in answer.recommendations], expected)
    # the untrained movies are read: another one in their place gives another user vector
    swapped = [*history_rows[:2], trained.n_trained + 2, trained.n_trained + 3]
    other = brute_force_user_vectors(trained, torch.tensor([swapped]), torch.tensor([4]))
    assert not torch.allclose(vector, other, atol=1e-3)
    assert len(untrained) >= 4
    # the served package answers the same
    model = mlflow.pyfunc.load_model(str(trained.artifacts / "mlflow_model"))
    [packaged] = model.predict(pd.DataFrame({"user_id": [-5], "k": [K], "history": [history]}))
    assert_same_answer(packaged, answer)
