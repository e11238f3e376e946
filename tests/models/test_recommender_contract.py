"""One contract for every recommender, on data whose right answer is known exactly.

Two taste groups of users, each rating only its own half of the catalogue: a model that learns
anything collaborative ranks a user's held-out movie among the few unseen movies of the user's
own half; popularity, equal across movies here, cannot.
"""

import numpy as np
import polars as pl
import pytest
import torch

from two_tower_recsys.evaluation.evaluator import evaluate, evaluation_task
from two_tower_recsys.models.als import fit_als
from two_tower_recsys.models.ease import EaseScorer, ease_weights, gram_matrix
from two_tower_recsys.models.interaction_matrix import interaction_matrix
from two_tower_recsys.models.popularity import fit_popularity
from two_tower_recsys.pipelines.hydra_edge import compose_settings
from two_tower_recsys.preprocessing.histories import histories_for
from two_tower_recsys.preprocessing.processed import ProcessedDataset
from two_tower_recsys.training.fit import fit_two_tower

USERS_PER_GROUP, ITEMS_PER_GROUP, RATED_PER_USER = 40, 15, 12


def two_taste_groups() -> ProcessedDataset:
    rng = np.random.default_rng(0)
    splits = {"train": [], "val": [], "test": []}
    for user in range(2 * USERS_PER_GROUP):
        group = user // USERS_PER_GROUP
        items = group * ITEMS_PER_GROUP + rng.permutation(ITEMS_PER_GROUP)[:RATED_PER_USER]
        # (user, movie, time): rated in the permutation's order, so time order carries no pattern
        splits["train"] += [(user, item, time) for time, item in enumerate(items[:-2])]
        splits["val"].append((user, items[-2], RATED_PER_USER - 2))
        splits["test"].append((user, items[-1], RATED_PER_USER - 1))

    def frame(rows):
        users, items, times = np.array(rows).T
        return pl.DataFrame(
            {
                "user_idx": users.astype(np.int32),
                "item_idx": items.astype(np.int32),
                "timestamp": times.astype(np.int64),
                "rating": np.full(len(rows), 5.0, dtype=np.float32),
            }
        )

    n_items = 2 * ITEMS_PER_GROUP
    return ProcessedDataset(
        train=frame(splits["train"]),
        val=frame(splits["val"]),
        test=frame(splits["test"]),
        user_ids=np.arange(2 * USERS_PER_GROUP) + 1,
        item_ids=np.arange(n_items) + 100,
        titles=pl.DataFrame({"item_idx": np.arange(n_items), "title": [f"m{i}" for i in range(n_items)]}),
        stats={},
    )


def popularity(dataset, tmp_path):
    return fit_popularity(evaluation_task(dataset, "test").history, dataset.n_items)


def ease(dataset, tmp_path):
    """Fitted on train; test scores read train + validation, as the pipeline scores it."""
    train = interaction_matrix(dataset.train, dataset.n_users, dataset.n_items)
    history = interaction_matrix(evaluation_task(dataset, "test").history, dataset.n_users, dataset.n_items)
    return EaseScorer(ease_weights(gram_matrix(train), l2=1.0), history)


def als(dataset, tmp_path):
    train = interaction_matrix(dataset.train, dataset.n_users, dataset.n_items)
    # Two taste groups: two factors are their structure; more over-fit 80 users.
    return fit_als(train, factors=2, regularization=1.0, iterations=15, alpha=10.0, seed=0)


def two_tower(dataset, tmp_path, overrides=()):
    settings = compose_settings(
        [
            "data=synthetic",
            "trainer.max_epochs=30",
            "trainer.batch_size=64",
            "trainer.progress_bar=false",
            f"trainer.monitor_k={UNSEEN_IN_OWN_GROUP}",  # recall@50 is always 1 over 30 movies
            *overrides,
        ]
    )
    fit = fit_two_tower(
        dataset,
        model_cfg=settings.model,
        trainer_cfg=settings.trainer,
        eval_cfg=settings.eval,
        seed=0,
        checkpoint_dir=tmp_path,
    )
    if fit.module.reads_histories:  # the contract scores test: histories are train + validation
        return fit.module.scorer(histories_for(dataset, "test", settings.model.max_history))
    return fit.module.scorer()


def sequence_two_tower(dataset, tmp_path):
    return two_tower(
        dataset,
        tmp_path,
        ["model.user_tower=sequence", "trainer.optimizer=adamw", "trainer.lr=0.005", "model.l2_reg=0"],
    )


MODELS = {
    "popularity": popularity,
    "ease": ease,
    "als": als,
    "two_tower": two_tower,
    "sequence_two_tower": sequence_two_tower,
}
UNSEEN_IN_OWN_GROUP = ITEMS_PER_GROUP - RATED_PER_USER + 1  # the test movie and the never-rated ones


@pytest.fixture(scope="module")
def dataset():
    return two_taste_groups()


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    """Each model fitted once for the whole module."""
    return {name: fit(dataset, tmp_path_factory.mktemp(name)) for name, fit in MODELS.items()}


@pytest.mark.parametrize("name", MODELS)
def test_scores_every_movie_in_a_fresh_tensor(name, dataset, trained):
    scorer = trained[name]
    users = torch.tensor([0, 5, 79])
    scores = scorer.score(users)
    assert scores.shape == (3, dataset.n_items) and scores.dtype == torch.float32
    expected = scores.clone()
    scores.fill_(float("-inf"))  # the caller owns it: masking in place must not alter the model
    assert torch.equal(scorer.score(users), expected)


@pytest.mark.parametrize("name", MODELS)
def test_held_out_movie_ranks_within_the_users_own_group(name, dataset, trained):
    scorer = trained[name]
    result = evaluate(
        scorer, evaluation_task(dataset, "test"), recall_ks=(UNSEEN_IN_OWN_GROUP,), ndcg_ks=(), progress=False
    )
    recall = result.metrics[f"recall@{UNSEEN_IN_OWN_GROUP}"]
    if name == "popularity":
        assert recall < 0.5  # it cannot tell the groups apart
    else:
        assert recall >= 0.95  # the held-out movie beats all 15 movies of the other group
