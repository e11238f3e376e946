"""Movies without an id embedding: the catalogue's rarely rated movies at training, and add-movies."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl
import pytest
from answers import assert_same_answers
from inference_support import write_known_index
from support import TINY_SYNTHETIC, run_cli, scratch_paths

from two_tower_recsys.artifacts.catalogue import add_movies
from two_tower_recsys.artifacts.store import MANIFEST_NAME, load_index
from two_tower_recsys.data.movielens import read_movies_csv
from two_tower_recsys.errors import ArtifactError, DataError
from two_tower_recsys.inference.packaging import package_model
from two_tower_recsys.inference.recommender import Recommender
from two_tower_recsys.pipelines import train_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings
from two_tower_recsys.settings import InferConfig

CONTENT = "model.item_features=[id,genres,year,title]"
MIN_ITEM_INTERACTIONS = 40  # drops a share of TINY_SYNTHETIC's 120 movies from training


def train(root: Path, *overrides: str) -> Path:
    base = [o for o in TINY_SYNTHETIC if not o.startswith("trainer.max_epochs")]
    settings = compose_settings(
        [
            *base,
            "trainer.max_epochs=1",
            "logging.enabled=false",
            *scratch_paths(root),
            *overrides,
        ]
    )
    train_pipeline.run(settings)
    return root / "artifacts"


@pytest.fixture(scope="module")
def content_artifacts(tmp_path_factory) -> Path:
    return train(
        tmp_path_factory.mktemp("content"), CONTENT, f"data.min_item_interactions={MIN_ITEM_INTERACTIONS}"
    )


def catalogue_of(artifacts: Path) -> pl.DataFrame:
    with zipfile.ZipFile(artifacts.parent / "raw/synthetic.zip") as archive:
        name = next(n for n in archive.namelist() if n.endswith("movies.csv"))
        return pl.read_csv(io.BytesIO(archive.read(name)))


def test_every_catalogue_movie_gets_a_vector_the_dropped_ones_from_content(content_artifacts):
    index = load_index(content_artifacts)
    catalogue = catalogue_of(content_artifacts)
    trained = int(index.manifest["dataset"]["items"])
    assert 0 < trained < catalogue.height  # the threshold dropped some movies: the case under test
    assert sorted(index.item_ids.tolist()) == sorted(catalogue["movieId"].to_list())
    rest = index.item_ids[trained:]
    assert not index.popularity[trained:].any()
    rows = pl.DataFrame({"movieId": rest}).join(catalogue, on="movieId", how="left", maintain_order="left")
    expected = index.movie_content.encode(rows).numpy()
    np.testing.assert_allclose(index.item_embeddings[trained:].numpy(), expected, rtol=1e-5, atol=1e-6)
    # trained movies carry their id embedding too: not their content vector alone
    head = pl.DataFrame({"movieId": index.item_ids[:trained]}).join(catalogue, on="movieId", how="left")
    assert not np.allclose(index.item_embeddings[:trained].numpy(), index.movie_content.encode(head).numpy())


def test_ratings_of_the_dropped_movies_are_in_the_rated_set(content_artifacts):
    index = load_index(content_artifacts)
    trained = int(index.manifest["dataset"]["items"])
    with zipfile.ZipFile(content_artifacts.parent / "raw/synthetic.zip") as archive:
        name = next(n for n in archive.namelist() if n.endswith("ratings.csv"))
        ratings = pl.read_csv(io.BytesIO(archive.read(name)))
    position = {movie: row for row, movie in enumerate(index.item_ids.tolist())}
    user_row = {user: row for row, user in enumerate(index.user_ids.tolist())}
    dropped = set(index.item_ids[trained:].tolist())
    pairs = [
        (user_row[u], position[m])
        for u, m in ratings.select("userId", "movieId").iter_rows()
        if m in dropped and u in user_row
    ]
    assert pairs  # the case under test: users rated movies training dropped
    for user, item in pairs:
        assert item in set(index.rated.items_of(user).tolist())  # so exclude=rated hides them


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("movieId,title,genres\n" + "".join(f"{row}\n" for row in rows))
    return path


@pytest.mark.slow  # the real two-tower add-movies command line
def test_add_movies_appends_content_vectors_and_the_package_serves_them(content_artifacts, tmp_path):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(content_artifacts, artifacts)
    before = load_index(artifacts)
    genre = before.movie_content.vocabulary.genres[0]
    new = write_csv(
        tmp_path / "new.csv", [f"900001,Brand New Film (2026),{genre}", '900002,"Second, The (2026)",']
    )
    result = run_cli(["add-movies", f"paths.artifacts_dir={artifacts}", f"paths.new_movies={new}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "added 2 movies; the index now holds" in result.stdout
    # training's package was built from the index the movies were added to: its table is merged
    assert "answer table: the previous one merged with the 2 new movies" in result.stderr
    after = load_index(artifacts)  # verified against the new manifest
    assert after.item_ids.tolist() == [*before.item_ids.tolist(), 900001, 900002]
    assert after.titles[-1] == "Second, The (2026)"
    assert (after.item_embeddings[: before.n_items] == before.item_embeddings).all()  # untouched
    expected = before.movie_content.encode(read_movies_csv(new)).numpy()
    np.testing.assert_allclose(after.item_embeddings[-2:].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert (after.user_embeddings == before.user_embeddings).all()
    assert after.manifest["movies_added"] == 2
    # The rebuilt package (a served model after a restart) knows them: asked for every movie,
    # each user gets them; and they have neighbours.
    model = mlflow.pyfunc.load_model(str(artifacts / "mlflow_model"))
    user = int(after.user_ids[0])
    [answer] = model.predict(pd.DataFrame({"user_id": [user], "k": [after.n_items]}))
    assert {900001, 900002} <= {movie for movie, _, _ in answer["recommendations"]}
    [similar] = model.predict(pd.DataFrame({"movie_id": [900001], "k": [3]}))
    assert len(similar["similar"]) == 3
    assert Recommender.from_artifacts(artifacts).n_items == before.n_items + 2
    # Every user's answers from the merged table are the brute-force core's over the grown catalogue.
    core = Recommender.from_artifacts(artifacts)  # the index alone: no table, every movie scored
    assert core.answers is None
    users = after.user_ids.tolist()
    table_k = InferConfig().answer_table_k
    assert Recommender.from_artifacts(artifacts / "mlflow_model/artifacts/index").answers.k == table_k
    for k in (10, table_k):
        got = model.predict(pd.DataFrame({"user_id": users, "k": [k] * len(users)}))
        assert_same_answers(got, core.recommend(users, k), k)
    recommended = {movie for answer in got for movie, _, _ in answer["recommendations"]}
    assert {900001, 900002} <= recommended  # the table's rows did take the new movies in


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            ["900001,A (2026),Drama", "900001,B (2026),Drama"],
            "line 3: movieId 900001 appears twice (also on line 2)",
        ),
        (["900001,,Drama"], "line 2: movieId 900001 has no title"),
        (["900001,A (2026),Spaghetti Western"], "line 2: unknown genre 'Spaghetti Western'"),
        (["900001,A (2026),Drama", ",B (2026),Drama"], "line 3: movieId is missing"),
    ],
)
def test_bad_rows_are_one_line_naming_the_line_and_nothing_is_written(
    content_artifacts, tmp_path, rows, message
):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(content_artifacts, artifacts)
    manifest_before = (artifacts / MANIFEST_NAME).read_bytes()
    rows = [row.replace("Drama", load_index(artifacts).movie_content.vocabulary.genres[0]) for row in rows]
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError) as caught:
        add_movies(artifacts, read_movies_csv(path), str(path))
    text = str(caught.value)
    assert text.startswith(f"{path} {message}") and text.endswith("; nothing was added")
    assert "\n" not in text
    assert (artifacts / MANIFEST_NAME).read_bytes() == manifest_before
    assert not list(tmp_path.glob("*staging*")) and not list(artifacts.parent.glob(".*artifacts*"))


def test_a_movie_already_in_the_index_is_refused(content_artifacts, tmp_path):
    known = int(load_index(content_artifacts).item_ids[0])
    path = write_csv(tmp_path / "again.csv", [f"{known},Again (2026),"])
    with pytest.raises(DataError, match=f"line 2: movieId {known} is already in the index"):
        add_movies(content_artifacts, read_movies_csv(path), str(path))


def test_an_id_only_model_cannot_add_movies(tmp_path):
    known_index_dir = write_known_index(tmp_path / "artifacts")
    path = write_csv(tmp_path / "new.csv", ["900001,A (2026),Drama"])
    with pytest.raises(ArtifactError, match="reads movie ids only"):
        add_movies(known_index_dir, read_movies_csv(path), str(path))


def test_the_package_is_rebuilt_from_the_index(content_artifacts, tmp_path):
    """package_model on an index with content: the copy carries the encoder (verified)."""
    package = package_model(content_artifacts, tmp_path / "mlflow_model", InferConfig())
    assert (package.path / "artifacts/index/movie_content.pt").exists()
