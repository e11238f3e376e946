"""The answer table after add-movies: the previous table merged with the new movies, as a rebuild gives."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pytest
from answers import assert_same_answers, assert_same_recommendations
from inference_support import write_rated_index

from two_tower_recsys.artifacts.store import verified_manifest
from two_tower_recsys.inference import answer_table_growth
from two_tower_recsys.inference.answer_table import ANSWER_SCORES, AnswerTable, read_answer_table
from two_tower_recsys.inference.answer_table_growth import (
    GrownCatalogue,
    grown_top_items,
    previous_answer_table,
)
from two_tower_recsys.inference.batch import top_items_of_every_user
from two_tower_recsys.inference.packaging import PACKAGED_INDEX, package_model
from two_tower_recsys.inference.recommender import Recommender
from two_tower_recsys.settings import EXCLUDE_CHOICES, InferConfig

N_USERS, N_OLD, N_NEW = 60, 40, 12
FULL_USER = 0  # has rated all the old movies but two: fewer than k left, the table pads with -inf


def write_catalogue(directory: Path, n_items: int, tied: bool) -> Path:
    """The first ``n_items`` movies of one catalogue of N_OLD + N_NEW: the grown index is the old
    one with movies appended (the same users, vectors and ratings, as add-movies leaves them).

    ``tied``: integer-valued embeddings in -2..2 (3 dimensions), so every float32 score is an exact
    integer whatever order BLAS sums it in, and many tie: tables are compared exactly, tie order
    included. Otherwise normal floats in 8 dimensions, compared up to summation order.
    """
    rng = np.random.default_rng(11)
    if tied:
        users = rng.integers(-2, 3, size=(N_USERS, 3)).astype(np.float32)
        items = rng.integers(-2, 3, size=(N_OLD + N_NEW, 3)).astype(np.float32)
    else:
        users = rng.normal(size=(N_USERS, 8)).astype(np.float32)
        items = rng.normal(size=(N_OLD + N_NEW, 8)).astype(np.float32)
    rated = [(FULL_USER, i) for i in range(N_OLD - 2)]  # old movies only: nobody rated a new one
    rated += [(u, int(i)) for u in range(1, N_USERS) for i in rng.choice(N_OLD, size=12, replace=False)]
    return write_rated_index(
        directory, users, items[:n_items], rated, temperature=1.0 if tied else 0.5, name="growing"
    )


@pytest.fixture(scope="module")
def catalogues(tmp_path_factory) -> dict[tuple[bool, str], Path]:
    """(tied, "old" | "grown") -> index directory."""
    root = tmp_path_factory.mktemp("growing")
    return {
        (tied, name): write_catalogue(root / f"{name}-{tied}", n_items, tied)
        for tied in (True, False)
        for name, n_items in (("old", N_OLD), ("grown", N_OLD + N_NEW))
    }


def table_from_scratch(index_dir: Path, k: int, exclude: str) -> AnswerTable:
    """Every user's top-k, ranked by the core over the whole catalogue: what packaging ships."""
    recommender = Recommender.from_artifacts(index_dir, batch_size=16)
    k = min(k, recommender.n_items)
    batches = top_items_of_every_user(recommender, k, exclude=exclude, progress=False, workers=1)
    return stacked(batches, exclude)


def stacked(batches, exclude: str) -> AnswerTable:
    scores, items = zip(*(top for _, top in batches), strict=True)
    return AnswerTable(np.concatenate(items).astype(np.int32), np.concatenate(scores), exclude)


def grown_table(old: AnswerTable, grown_dir: Path, k: int) -> AnswerTable:
    index = Recommender.from_artifacts(grown_dir).index
    grown = GrownCatalogue(old, N_OLD)
    k = min(k, index.n_items)
    assert grown.usable_for(index, k, old.exclude) is None
    return stacked(grown_top_items(index, grown, k, batch_size=7, progress=False), old.exclude)


# 5: most of the catalogue is left out; 45: the old table held all 40 old movies, every row grows;
# 60: clamped to the 52 of the grown catalogue.
@pytest.mark.parametrize("k", [5, 45, 60])
@pytest.mark.parametrize("exclude", EXCLUDE_CHOICES)
def test_on_integer_scores_the_merged_table_is_the_rebuilt_one_exactly(catalogues, exclude, k):
    old = table_from_scratch(catalogues[True, "old"], k, exclude)
    got = grown_table(old, catalogues[True, "grown"], k)
    expected = table_from_scratch(catalogues[True, "grown"], k, exclude)
    np.testing.assert_array_equal(got.items, expected.items)  # ties in the core's order too
    np.testing.assert_array_equal(got.scores, expected.scores)


def test_the_integer_case_holds_what_it_is_meant_to(catalogues):
    """Users who gain several new movies, users who gain none, ties at the cut, padded rows."""
    old = table_from_scratch(catalogues[True, "old"], 5, "rated")
    grown = table_from_scratch(catalogues[True, "grown"], 5, "rated")
    gained = (grown.items >= N_OLD).sum(axis=1)
    assert (gained >= 2).any() and (gained == 0).any()
    index = Recommender.from_artifacts(catalogues[True, "grown"]).index
    new_scores = (index.user_embeddings @ index.item_embeddings[N_OLD:].T).numpy()
    # a new movie scoring exactly the last entry's score, left out (the lower index wins the tie)
    left_out_at_cut = [
        (user, N_OLD + new)
        for user, new in zip(*np.nonzero(new_scores == grown.scores[:, -1:]), strict=True)
        if N_OLD + new not in grown.items[user]
    ]
    assert left_out_at_cut
    assert np.isneginf(old.scores[FULL_USER]).sum() == 3  # 2 old movies left: padded
    assert (grown.items[FULL_USER] >= N_OLD).sum() >= 3 and np.isfinite(grown.scores[FULL_USER]).all()


@pytest.mark.parametrize("exclude", EXCLUDE_CHOICES)
def test_on_float_scores_the_merged_table_is_the_rebuilt_one_up_to_summation_order(catalogues, exclude):
    old = table_from_scratch(catalogues[False, "old"], 8, exclude)
    got = grown_table(old, catalogues[False, "grown"], 8)
    expected = table_from_scratch(catalogues[False, "grown"], 8, exclude)
    assert ((expected.items >= N_OLD).sum(axis=1) >= 2).any()  # the new movies do enter
    for user in range(N_USERS):
        assert_same_recommendations(rows_of(got, user), rows_of(expected, user), (exclude, user))


def rows_of(table: AnswerTable, user: int) -> list[tuple[int, float]]:
    finite = np.isfinite(table.scores[user])  # -inf: hidden movies padding the row, never answered
    return list(zip(table.items[user][finite].tolist(), table.scores[user][finite].tolist(), strict=True))


def test_a_table_that_cannot_be_merged_says_why(catalogues):
    index = Recommender.from_artifacts(catalogues[True, "grown"]).index
    old = table_from_scratch(catalogues[True, "old"], 5, "rated")
    grown = GrownCatalogue(old, N_OLD)
    assert grown.usable_for(index, 5, "rated") is None
    assert grown.usable_for(index, 3, "rated") is None  # a prefix of each row
    assert "exclude=rated, not positives" in grown.usable_for(index, 5, "positives")
    assert "top 5, fewer than 6" in grown.usable_for(index, 6, "rated")  # answer_table_k raised
    whole = GrownCatalogue(table_from_scratch(catalogues[True, "old"], N_OLD, "rated"), N_OLD)
    assert whole.usable_for(index, N_OLD + N_NEW, "rated") is None  # the whole old catalogue


def test_only_a_sound_package_of_the_index_before_gives_its_table(catalogues, tmp_path):
    old_dir, grown_dir = catalogues[True, "old"], catalogues[True, "grown"]
    package = package_model(old_dir, tmp_path / "package", InferConfig(answer_table_k=5)).path
    packaged_index = package / PACKAGED_INDEX
    table = previous_answer_table(packaged_index, verified_manifest(old_dir))
    assert table is not None and table.k == 5 and table.exclude == "rated"
    assert previous_answer_table(packaged_index, verified_manifest(grown_dir)) is None  # another index
    assert previous_answer_table(tmp_path / "nothing", verified_manifest(old_dir)) is None
    scores = np.load(packaged_index / ANSWER_SCORES)
    scores[0, 0] += 1.0
    np.save(packaged_index / ANSWER_SCORES, scores)
    assert previous_answer_table(packaged_index, verified_manifest(old_dir)) is None  # damaged


def test_a_package_grown_from_the_previous_one_serves_the_rebuilt_answers(catalogues, tmp_path, caplog):
    old_dir, grown_dir = catalogues[True, "old"], catalogues[True, "grown"]
    infer = InferConfig(answer_table_k=5)
    package = package_model(old_dir, tmp_path / "package", infer).path
    previous = previous_answer_table(package / PACKAGED_INDEX, verified_manifest(old_dir))
    assert previous is not None
    with caplog.at_level(logging.INFO, logger="two_tower_recsys.inference.packaging"):
        package_model(grown_dir, package, infer, GrownCatalogue(previous, N_OLD))
    assert "the previous one merged with the 12 new movies" in caplog.text
    shipped = read_answer_table(package / PACKAGED_INDEX, verified_manifest(package / PACKAGED_INDEX))
    expected = table_from_scratch(grown_dir, 5, "rated")
    np.testing.assert_array_equal(shipped.items, expected.items)
    np.testing.assert_array_equal(shipped.scores, expected.scores)
    model = mlflow.pyfunc.load_model(str(package))
    core = Recommender.from_artifacts(grown_dir)  # no table: the brute-force core
    assert core.answers is None
    users = list(range(1, N_USERS + 1))
    assert_same_answers(model.predict({"user_id": users, "k": [5] * N_USERS}), core.recommend(users, 5))


def test_a_merge_that_fails_leaves_the_previous_package_serving(catalogues, tmp_path, monkeypatch):
    old_dir, grown_dir = catalogues[True, "old"], catalogues[True, "grown"]
    infer = InferConfig(answer_table_k=5, batch_size=16)  # 4 batches
    package = package_model(old_dir, tmp_path / "package", infer).path
    previous = previous_answer_table(package / PACKAGED_INDEX, verified_manifest(old_dir))
    merge = answer_table_growth._merged

    def crash_after_the_first_batch(*args, **kwargs):
        if crash_after_the_first_batch.calls:
            raise MemoryError("killed")
        crash_after_the_first_batch.calls += 1
        return merge(*args, **kwargs)

    crash_after_the_first_batch.calls = 0
    monkeypatch.setattr(answer_table_growth, "_merged", crash_after_the_first_batch)
    with pytest.raises(MemoryError):
        package_model(grown_dir, package, infer, GrownCatalogue(previous, N_OLD))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["package"]  # no staging left
    model = mlflow.pyfunc.load_model(str(package))  # verified: the previous package, intact
    assert_same_answers(
        model.predict({"user_id": [2], "k": [5]}), Recommender.from_artifacts(old_dir).recommend([2], 5)
    )
