"""The answer table shipped in a package: the core's exact answers, looked up instead of computed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from answers import assert_same_answers
from inference_support import write_known_index, write_rated_index

from two_tower_recsys.errors import ArtifactError
from two_tower_recsys.inference.answer_table import ANSWER_ITEMS, ANSWER_SCORES
from two_tower_recsys.inference.packaging import package_model
from two_tower_recsys.inference.recommender import Recommender
from two_tower_recsys.settings import EXCLUDE_CHOICES, InferConfig


def packaged_index(package: Path) -> Path:
    return package / "artifacts" / "index"


def write_tied_index(directory: Path) -> Path:
    """30 users x 40 movies whose 0/1 embeddings in 3 dimensions tie most scores.

    Integer-valued embeddings make every score exact in float32 whatever the summation order, so
    answers here are compared exactly, ties and their order included, on any processor.
    """
    rng = np.random.default_rng(5)
    n_users, n_items = 30, 40
    rated = [
        (u, i) for u in range(n_users) for i in rng.choice(n_items, size=rng.integers(0, 39), replace=False)
    ]
    users = rng.integers(0, 2, size=(n_users, 3)).astype(np.float32)
    items = rng.integers(0, 2, size=(n_items, 3)).astype(np.float32)
    return write_rated_index(directory, users, items, rated, temperature=0.5, name="tied")


def test_a_packaged_model_looks_up_what_the_core_computes(packaged_model, random_index_dir):
    looked_up = Recommender.from_artifacts(packaged_index(packaged_model))
    computed = Recommender.from_artifacts(random_index_dir)
    assert computed.answers is None
    assert looked_up.answers is not None and looked_up.answers.k == InferConfig().answer_table_k
    assert isinstance(looked_up.answers.items, np.memmap)  # the server's workers share one copy
    assert isinstance(looked_up.answers.scores, np.memmap)
    users = looked_up.index.user_ids
    for k in (1, 10, 100, 101):  # 101: past the table, computed
        assert looked_up.answers.answers(np.array([k]), "rated") == (k <= 100)
        assert_same_answers(looked_up.recommend(users, k), computed.recommend(users, k), k)
    for user in users[:25]:  # one user per call, as the server asks
        assert_same_answers(looked_up.recommend([user], 7), computed.recommend([user], 7), user)


@pytest.mark.parametrize("writer", [write_tied_index, write_known_index], ids=["ties", "short-users"])
def test_ties_and_users_left_with_few_movies_keep_the_cores_answers(tmp_path, writer):
    index_dir = writer(tmp_path / "artifacts")
    package = tmp_path / "package"
    package_model(index_dir, package, InferConfig(answer_table_k=3))
    looked_up = Recommender.from_artifacts(packaged_index(package))
    computed = Recommender.from_artifacts(index_dir)
    assert looked_up.answers is not None and looked_up.answers.k == 3
    users = looked_up.index.user_ids
    for exclude in EXCLUDE_CHOICES:  # the table holds "rated" (the default); the others are computed
        for k in range(1, looked_up.n_items + 2):
            got = looked_up.recommend(users, k, exclude=exclude)
            assert got == computed.recommend(users, k, exclude=exclude), (exclude, k)


def test_a_changed_table_is_refused_like_any_changed_index_file(packaged_model, tmp_path):
    package = shutil.copytree(packaged_model, tmp_path / "package")
    scores_path = packaged_index(package) / ANSWER_SCORES
    scores = np.load(scores_path)
    scores[0, 0] += 1.0
    np.save(scores_path, scores)
    with pytest.raises(ArtifactError, match=ANSWER_SCORES):
        Recommender.from_artifacts(packaged_index(package))


@pytest.mark.parametrize(
    "infer",
    [InferConfig(answer_table_k=0), InferConfig(index="hnsw"), InferConfig(index="pq")],
    ids=["answer_table_k=0", "hnsw", "pq"],
)
def test_no_table_ships_when_switched_off_or_with_an_approximate_index(random_index_dir, tmp_path, infer):
    pytest.importorskip("faiss") if infer.index != "exact" else None
    package = tmp_path / "package"
    package_model(random_index_dir, package, infer)
    assert not (packaged_index(package) / ANSWER_ITEMS).exists()
    assert Recommender.from_settings(packaged_index(package), infer).answers is None
