"""Content features: parsing titles, encoding movies, and the movie tower that reads them."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from two_tower_recsys.errors import ConfigError, DataError
from two_tower_recsys.models.components.content import (
    ContentItemTower,
    ContentVocabulary,
    encode_movies,
    release_year,
    title_words,
)
from two_tower_recsys.settings import ModelConfig

MOVIES = pl.DataFrame(
    {
        "movieId": [1, 2, 3, 4],
        "title": [
            "Toy Story (1995)",
            "City of Lost Children, The (Cité des enfants perdus, La) (1995)",
            "Babylon 5",
            "Fawlty Towers (1975-1979) ",
        ],
        "genres": ["Adventure|Animation|Children", "Adventure|Drama", "(no genres listed)", "Comedy"],
    }
)


@pytest.mark.parametrize(
    ("title", "year"),
    [
        ("Toy Story (1995)", 1995),
        ("Babylon 5", None),
        ("Fawlty Towers (1975-1979) ", 1975),
        ("1984 (1984)", 1984),
    ],
)
def test_the_release_year_is_read_from_the_end_of_the_title(title, year):
    assert release_year(title) == year


def test_title_words_drop_the_year_punctuation_and_stop_words():
    assert title_words(MOVIES["title"][1]) == ["city", "lost", "children", "cité", "des", "enfants", "perdus"]
    assert title_words("1984 (1984)") == ["1984"]


def test_encoding_gives_each_feature_its_tokens_and_nothing_for_missing_values():
    vocabulary = ContentVocabulary.from_movies(("id", "genres", "year", "title"), MOVIES)
    assert vocabulary.genres == ("Adventure", "Animation", "Children", "Comedy", "Drama")
    tokens = encode_movies(MOVIES, vocabulary)
    assert tokens["genres"][0, :4].tolist() == [1, 2, 3, 0]
    assert not tokens["genres"][2].any()  # (no genres listed): neutral
    assert tokens["year"][:, 0].tolist()[2] == 0  # no year: neutral
    assert tokens["year"][0, 0] == tokens["year"][1, 0] != tokens["year"][3, 0]  # 1995, 1995, 1975
    assert (tokens["title"][2] > 0).sum() == 2  # "babylon", "5"


def test_an_unknown_genre_is_an_error_naming_the_row_only_when_strict():
    vocabulary = ContentVocabulary.from_movies(("genres",), MOVIES)
    new = pl.DataFrame(
        {"movieId": [9, 10], "title": ["A (2000)", "B (2001)"], "genres": ["Drama", "Western"]}
    )
    with pytest.raises(DataError, match="row 1: unknown genre 'Western'"):
        encode_movies(new, vocabulary, strict=True)
    assert not encode_movies(new, vocabulary)["genres"][1].any()


def test_the_tower_is_the_id_embedding_plus_the_content_vector():
    torch.manual_seed(0)
    vocabulary = ContentVocabulary.from_movies(("id", "genres", "year", "title"), MOVIES)
    tower = ContentItemTower(len(MOVIES), 8, vocabulary, with_id=True, init_std=0.1)
    tower.set_tokens(encode_movies(MOVIES, vocabulary))
    with torch.no_grad():
        expected = tower.embedding.weight + tower.content.encode(MOVIES)
        got = tower(torch.arange(len(MOVIES)))
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    content_only = ContentItemTower(len(MOVIES), 8, vocabulary, with_id=False)
    content_only.set_tokens(encode_movies(MOVIES, vocabulary))
    with torch.no_grad():
        np.testing.assert_allclose(
            content_only.embed_all().numpy(),
            content_only.content.encode(MOVIES).numpy(),
            rtol=1e-5,
            atol=1e-6,
        )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"item_features": ("id", "tags")}, "model.item_features: unknown feature 'tags'"),
        ({"item_features": ()}, "model.item_features must name each feature once"),
        ({"item_features": ("id", "id")}, "model.item_features must name each feature once"),
    ],
)
def test_bad_item_features_are_one_line_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**fields)


def test_id_dropout_leaves_out_the_id_of_a_share_of_rows_in_training_only():
    torch.manual_seed(0)
    vocabulary = ContentVocabulary.from_movies(("id", "genres"), MOVIES)
    tower = ContentItemTower(len(MOVIES), 8, vocabulary, with_id=True, init_std=0.1, id_dropout=0.5)
    tower.set_tokens(encode_movies(MOVIES, vocabulary))
    rows = torch.arange(len(MOVIES)).repeat(250)  # 1,000 rows
    with torch.no_grad():
        content = tower.content.encode(MOVIES)[rows]
        full = content + tower.embedding(rows)
        trained = tower.train()(rows)
        content_only = (trained - content).abs().amax(dim=1) < 1e-6
        assert torch.allclose(trained[~content_only], full[~content_only], atol=1e-6)
        assert 0.4 < content_only.float().mean() < 0.6  # 500 expected; 0.4..0.6 is > 6 sd away
        assert torch.allclose(tower.eval()(rows), full, atol=1e-6)
