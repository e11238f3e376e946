"""Tags and the tag genome through the real training pipeline: index, dropped movies, add-movies."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from support import TINY_SYNTHETIC, scratch_paths

from two_tower_recsys.artifacts.store import load_index
from two_tower_recsys.data.movielens import read_movielens_zip, read_movies_csv
from two_tower_recsys.data.synthetic import write_synthetic_zip
from two_tower_recsys.inference.similar import SimilarMovieFinder
from two_tower_recsys.models.components.content import TAG_MIN_MOVIES
from two_tower_recsys.pipelines import add_movies_pipeline, train_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings, report_user_errors
from two_tower_recsys.settings import SyntheticSpec

FEATURES = ("id", "genres", "tags", "genome")
GENOME_TAGS = 6
MIN_ITEM_INTERACTIONS = 40  # drops a share of the 120 movies from training


def write_zip_with_content(path: Path) -> Path:
    """TINY_SYNTHETIC's data plus a tags.csv (each movie tagged with its genres by 1-3 users, and
    a one-off tag) and a genome for the even movieIds."""
    spec = SyntheticSpec(users=150, movies=120, ratings=9000, clusters=4)
    write_synthetic_zip(path, spec, name="custom", progress=False)
    movies = read_movielens_zip(path).movies.sort("movieId")
    rng = np.random.default_rng(0)
    tag_rows, genome_rows = [], []
    for movie_id, genres in movies.select("movieId", "genres").iter_rows():
        for genre in genres.split("|"):
            for user in range(1, 2 + int(rng.integers(3))):
                tag_rows.append(f"{user},{movie_id},{genre.upper()} ,{1000 + user}")
        tag_rows.append(f"7,{movie_id},only movie {movie_id},2000")
        if movie_id % 2 == 0:
            genome_rows += [f"{movie_id},{tag},{rng.random():.4f}" for tag in range(1, GENOME_TAGS + 1)]
    with zipfile.ZipFile(path, "a") as archive:
        folder = next(n for n in archive.namelist() if n.endswith("movies.csv")).rsplit("/", 1)[0]
        archive.writestr(f"{folder}/tags.csv", "userId,movieId,tag,timestamp\n" + "\n".join(tag_rows) + "\n")
        archive.writestr(
            f"{folder}/genome-scores.csv", "movieId,tagId,relevance\n" + "\n".join(genome_rows) + "\n"
        )
    return path


def settings_for(root: Path, raw_zip: Path, features: tuple[str, ...]):
    base = [o for o in TINY_SYNTHETIC if not o.startswith(("trainer.max_epochs", "data"))]
    return compose_settings(
        [
            *base,
            "data=custom",
            "trainer.max_epochs=1",
            "logging.enabled=false",
            "eval.baselines=[popularity]",
            f"data.min_item_interactions={MIN_ITEM_INTERACTIONS}",
            f"model.item_features=[{','.join(features)}]",
            *scratch_paths(root, raw_zip),
        ]
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("content-files")
    raw_zip = write_zip_with_content(root / "raw.zip")
    train_pipeline.run(settings_for(root, raw_zip, FEATURES))
    return root / "artifacts", raw_zip


def test_the_index_keeps_the_fitted_tag_vocabulary_and_the_genome_width(trained):
    artifacts, raw_zip = trained
    index = load_index(artifacts)
    vocabulary = index.movie_content.vocabulary
    assert vocabulary.features == ("genres", "tags", "genome") and vocabulary.genome_dim == GENOME_TAGS
    # Fitted on the training catalogue: the genres as tags (normalised), never a one-off tag.
    trained_ids = index.item_ids[: int(index.manifest["dataset"]["items"])].tolist()
    movies = read_movielens_zip(raw_zip, movie_content=("tags",)).movies
    on_trained = movies.filter(pl.col("movieId").is_in(trained_ids)).explode("tags").group_by("tags").len()
    assert vocabulary.tags == tuple(sorted(on_trained.filter(pl.col("len") >= TAG_MIN_MOVIES)["tags"]))
    assert vocabulary.tags and all(tag == tag.lower() and "only movie" not in tag for tag in vocabulary.tags)


def test_the_dropped_movies_are_served_from_their_tags_and_genome(trained):
    artifacts, raw_zip = trained
    index = load_index(artifacts)
    trained_count = int(index.manifest["dataset"]["items"])
    rest = index.item_ids[trained_count:]
    assert len(rest) > 0
    movies = read_movielens_zip(raw_zip, movie_content=FEATURES).movies
    rows = pl.DataFrame({"movieId": rest}).join(movies, on="movieId", how="left", maintain_order="left")
    expected = index.movie_content.encode(rows).numpy()
    np.testing.assert_allclose(index.item_embeddings[trained_count:].numpy(), expected, rtol=1e-5, atol=1e-6)
    # Their tags and genome are in those vectors: without them the vectors of exactly the movies
    # with a known tag or a genome differ.
    bare = index.movie_content.encode(rows.select("movieId", "title", "genres")).numpy()
    known = set(index.movie_content.vocabulary.tags)
    has_content = [
        genome is not None or bool(known & set(tags or []))
        for tags, genome in rows.select("tags", "genome").iter_rows()
    ]
    assert sum(has_content) >= len(rest) // 2  # the case under test
    assert (np.abs(expected - bare).max(axis=1) > 1e-6).tolist() == has_content


def test_added_movies_have_no_tags_or_genome_and_similar_movies_still_answer(trained, tmp_path):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(trained[0], artifacts)
    before = load_index(artifacts)
    genre = before.movie_content.vocabulary.genres[0]
    new = tmp_path / "new.csv"
    new.write_text(f"movieId,title,genres\n900001,Brand New Film (2026),{genre}\n")
    settings = compose_settings(
        [
            f"paths.artifacts_dir={artifacts}",
            f"paths.new_movies={new}",
            f"paths.mlflow_model_dir={tmp_path / 'm'}",
        ]
    )
    assert report_user_errors(lambda: add_movies_pipeline.run(settings)) == 0
    after = load_index(artifacts)
    # Neutral: the encoder's vector from the genres alone (a movies.csv carries no tags, no genome).
    expected = before.movie_content.encode(read_movies_csv(new)).numpy()
    np.testing.assert_allclose(after.item_embeddings[-1:].numpy(), expected, rtol=1e-5, atol=1e-6)
    [answer] = SimilarMovieFinder(after).similar([900001], 5)
    assert len(answer.similar) == 5 and 900001 not in [movie for movie, _, _ in answer.similar]


def test_asking_for_the_genome_of_a_zip_without_it_is_one_line_and_exit_status_2(tmp_path, capsys):
    raw_zip = tmp_path / "plain.zip"
    spec = SyntheticSpec(users=150, movies=120, ratings=9000, clusters=4)
    write_synthetic_zip(raw_zip, spec, name="custom", progress=False)
    settings = settings_for(tmp_path, raw_zip, ("id", "genome"))
    assert report_user_errors(lambda: train_pipeline.run(settings)) == 2
    assert capsys.readouterr().err == (
        "error: model.item_features: genome needs genome-scores.csv, which plain.zip does not have\n"
    )
