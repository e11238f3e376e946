"""The sequence user tower over a movie tower that reads content: a history reads movie vectors."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest
import torch
from loss_reference import candidate_cross_entropy

from two_tower_recsys.models.components.content import ContentVocabulary, encode_movies
from two_tower_recsys.models.components.sequence_tower import SequenceTower
from two_tower_recsys.settings import ModelConfig, TrainerConfig
from two_tower_recsys.training.module import TwoTowerModule
from two_tower_recsys.training.sequences import earlier_positives

# training_step outside a Trainer: Lightning's self.log warns and does nothing, as wanted here.
pytestmark = pytest.mark.filterwarnings("ignore:.*self.trainer. reference is not registered")
N_USERS, N_ITEMS = 6, 12
GENRES = ["Action", "Comedy|Drama", "Drama", "Animation|Children", "Comedy", "Horror"]
MOVIES = pl.DataFrame(
    {
        "movieId": list(range(1, N_ITEMS + 1)),
        "title": [f"Film Number {i} ({1950 + 5 * i})" for i in range(N_ITEMS)],
        "genres": [GENRES[i % len(GENRES)] for i in range(N_ITEMS)],
    }
)
CONTENT = ("id", "genres", "year", "title")


def content_module(
    item_features: tuple[str, ...] = CONTENT, **model_changes: object
) -> tuple[TwoTowerModule, ContentVocabulary]:
    torch.manual_seed(0)
    model = ModelConfig(
        user_tower="sequence",
        item_features=item_features,
        max_history=5,
        embedding_dim=8,
        n_heads=2,
        init_std=0.1,
        dropout=0.0,
        l2_reg=0.0,
        **model_changes,
    )
    vocabulary = ContentVocabulary.from_movies(item_features, MOVIES)
    module = TwoTowerModule.from_settings(
        N_USERS,
        N_ITEMS,
        model,
        TrainerConfig(optimizer="adamw"),
        item_counts=torch.ones(N_ITEMS).numpy(),
        content_vocabulary=vocabulary.as_dict(),
    )
    module.net.item_tower.set_tokens(encode_movies(MOVIES, vocabulary))
    return module, vocabulary


@pytest.mark.parametrize("item_features", [CONTENT, ("genres", "year", "title")])
def test_a_history_reads_the_movie_towers_vectors_as_served_around_them(item_features):
    """The training tower reads the movie tower; the served one reads a table of its vectors (the
    index's): the two give the same user vectors, so nothing of the history is lost in the index."""
    module, vocabulary = content_module(item_features)
    net = module.net.eval()
    assert net.user_tower.item_embedding is net.item_tower
    trained_tower = net.user_tower
    served = SequenceTower.from_weights(
        trained_tower.shape(), net.item_tower.embed_all().detach(), trained_tower.weights_without_items()
    )
    history = torch.tensor([[3, 7, 1, 0, 0], [11, 2, 5, 9, 4]])
    lengths = torch.tensor([3, 5])
    with torch.no_grad():
        torch.testing.assert_close(
            served(history, lengths), trained_tower(history, lengths), rtol=1e-5, atol=1e-6
        )
    # a movie's content is read: changing only one history movie's genres changes the user vector
    other_genre = MOVIES.with_columns(
        pl.when(pl.col("movieId") == 8).then(pl.lit("Horror")).otherwise("genres").alias("genres")
    )
    before = trained_tower(history, lengths).detach()
    net.item_tower.set_tokens(encode_movies(other_genre, vocabulary))
    with torch.no_grad():
        after = trained_tower(history, lengths)
    assert not torch.allclose(after[0], before[0], atol=1e-4)  # row 0 holds movie index 7 (movieId 8)


def test_the_content_encoder_has_one_copy_of_each_weight_in_the_module():
    module, _ = content_module()
    parameters = list(module.parameters())
    assert len({id(p) for p in parameters}) == len(parameters)
    assert any(p is module.net.item_tower.content.tables["title"].weight for p in parameters)
    saved = module.net.user_tower.weights_without_items()
    assert not [name for name in saved if name.startswith("item_embedding")]


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_the_full_softmax_trains_the_content_encoder_through_the_history_and_the_candidates(label_smoothing):
    """The hand-written full softmax's gradients, for every weight (content tables included), are
    autograd's on the definition: the candidates are the content-aware movie vectors."""
    module, _ = content_module(negatives="full", label_smoothing=label_smoothing, hide_earlier_positives=True)
    module.train()
    # Training windows (each user's distinct positives): inputs all but the last, targets all but the first.
    windows = torch.tensor([[3, 7, 1, 10, 0], [11, 2, 5, 9, 4], [6, 8, 2, 3, 0]])
    inputs, targets = windows[:, :-1], windows[:, 1:]
    mask = torch.arange(4).unsqueeze(0) < torch.tensor([[3], [4], [2]])
    batch = (inputs, targets, mask)

    loss = module.training_step(batch, 0)  # the step Lightning runs (its log needs no trainer here)
    names, parameters = zip(*module.named_parameters(), strict=True)
    got = dict(zip(names, torch.autograd.grad(loss, parameters, allow_unused=True), strict=True))

    states = module.net.user_tower.encode(inputs)[mask]
    logits = states @ module.net.item_tower.embed_all().T / module.model_config.temperature
    rows, movies = earlier_positives(batch)
    hidden = set(zip(rows.tolist(), movies.tolist(), strict=True))
    expected_loss = candidate_cross_entropy(logits, targets[mask], hidden, label_smoothing)
    assert float(loss.detach()) == pytest.approx(float(expected_loss.detach()), rel=1e-5)
    expected = torch.autograd.grad(expected_loss, parameters, allow_unused=True)
    for name, expected_grad in zip(names, expected, strict=True):
        if expected_grad is None:  # e.g. positions the batch never reaches
            assert got[name] is None or not got[name].any(), name
            continue
        torch.testing.assert_close(got[name], expected_grad, rtol=1e-4, atol=1e-6, msg=name)
    by_parameter = dict(zip(map(id, parameters), names, strict=True))  # shared weights: one name
    for table in module.net.item_tower.content.tables.values():
        assert got[by_parameter[id(table.weight)]].abs().max() > 0


def test_in_batch_training_steps_move_the_content_encoder():
    module, _ = content_module()
    module.train()
    optimizer = module.configure_optimizers()
    before = module.net.item_tower.content.tables["genres"].weight.detach().clone()
    batch = (
        torch.tensor([[3, 7, 1, 0], [11, 2, 5, 9]]),
        torch.tensor([[7, 1, 10, 0], [2, 5, 9, 0]]),
        torch.tensor([[True, True, True, False], [True, True, True, False]]),
    )
    loss = module.training_step(batch, 0)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert not torch.equal(module.net.item_tower.content.tables["genres"].weight, before)


def test_id_dropout_is_off_in_the_scorer_the_validation_calls_between_steps():
    module, _ = content_module(id_dropout=0.5)
    module.train()
    first = module.movie_vectors()
    assert torch.equal(first, module.movie_vectors())
    torch.testing.assert_close(first, module.net.item_tower.eval().embed_all().detach())
    assert module.net.item_tower.train().training


def test_a_sequence_tower_with_content_is_a_valid_setting():
    config = ModelConfig(user_tower="sequence", item_features=CONTENT, id_dropout=0.1)
    assert dataclasses.asdict(config)["item_features"] == CONTENT
