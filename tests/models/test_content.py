"""Content features: parsing titles, encoding movies, and the movie tower that reads them."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from two_tower_recsys.errors import ConfigError, DataError
from two_tower_recsys.models.components.content import (
    MAX_TAGS,
    TAG_MIN_MOVIES,
    ContentEncoder,
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


# Tags as the processed dataset holds them (most-used first) and a 3-value genome.
TAGGED = MOVIES.with_columns(
    pl.Series("tags", [["pixar", "funny", "toys"], ["dark", "funny", "pixar"], [], ["funny", "pixar"]]),
    pl.Series(
        "genome",
        [[1.0, 0.5, 0.0], None, [0.25, 0.25, 0.125], [0.0, 0.0, 1.0]],
        dtype=pl.Array(pl.Float16, 3),
    ),
)


def test_the_tag_vocabulary_keeps_tags_on_enough_movies_and_a_movie_its_first_known_tags():
    assert TAG_MIN_MOVIES == 3  # "funny" and "pixar" are on 3 movies; "toys" and "dark" on one
    vocabulary = ContentVocabulary.from_movies(("id", "tags"), TAGGED)
    assert vocabulary.tags == ("funny", "pixar")
    assert vocabulary.sizes() == {"tags": 3}
    tokens = encode_movies(TAGGED, vocabulary)["tags"]
    assert tokens.shape == (4, MAX_TAGS)
    assert tokens[:, :3].tolist() == [
        [2, 1, 0],
        [1, 2, 0],
        [0, 0, 0],
        [1, 2, 0],
    ]  # order kept, unknown dropped
    assert not tokens[:, 3:].any()
    # Movies added later from a movies.csv have no tags column: no token, neutral.
    assert not encode_movies(MOVIES, vocabulary)["tags"].any()


def test_a_movie_holds_at_most_max_tags_tags_the_most_used_first():
    many = [f"tag{i:02d}" for i in range(MAX_TAGS + 4)]
    movies = pl.DataFrame({"movieId": [1, 2, 3], "title": ["A", "B", "C"], "genres": ["", "", ""]})
    movies = movies.with_columns(pl.Series("tags", [many, many, list(reversed(many))]))
    vocabulary = ContentVocabulary.from_movies(("tags",), movies)
    tokens = encode_movies(movies, vocabulary)["tags"]
    assert tokens[0].tolist() == list(range(1, MAX_TAGS + 1))  # tag00..tag15: tokens 1..16
    assert tokens[2].tolist() == list(range(MAX_TAGS + 4, 4, -1))  # tag19..tag04


def test_the_genome_is_projected_linearly_and_a_movie_without_one_is_the_zero_vector():
    vocabulary = ContentVocabulary.from_movies(("genome",), TAGGED)
    assert vocabulary.genome_dim == 3 and vocabulary.sizes() == {}
    genome = encode_movies(TAGGED, vocabulary)["genome"]
    assert genome.dtype == np.float16
    np.testing.assert_array_equal(genome, [[1.0, 0.5, 0.0], [0, 0, 0], [0.25, 0.25, 0.125], [0, 0, 1.0]])
    torch.manual_seed(0)
    encoder = ContentEncoder(vocabulary, 4, init_std=0.1)
    weight = encoder.genome.weight.detach().numpy()  # [4, 3]
    vectors = encoder.encode(TAGGED).numpy()
    expected = genome.astype(np.float64) @ weight.T.astype(np.float64)
    np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-7)
    assert not vectors[1].any()  # no genome: nothing
    assert not encoder.encode(MOVIES).numpy().any()  # no genome column (added movies): neutral
    with pytest.raises(DataError, match="the movies' genome has 2 relevance values, the model reads 3"):
        encode_movies(
            TAGGED.with_columns(pl.Series("genome", [[0.0, 1.0]] * 4, dtype=pl.Array(pl.Float16, 2))),
            vocabulary,
        )


def test_the_vocabulary_round_trips_through_its_dict_and_old_dicts_still_load():
    vocabulary = ContentVocabulary.from_movies(("id", "genres", "tags", "genome"), TAGGED)
    assert ContentVocabulary.from_dict(vocabulary.as_dict()) == vocabulary
    old = {"features": ["genres", "year"], "genres": ["Drama"]}  # a manifest written before tags
    assert ContentVocabulary.from_dict(old) == ContentVocabulary(("genres", "year"), ("Drama",))


def test_asking_for_tags_the_movies_do_not_have_is_one_line():
    with pytest.raises(DataError, match="model.item_features: tags asked for, but the movies have no tags"):
        ContentVocabulary.from_movies(("id", "tags"), MOVIES)


def test_a_tower_reading_every_feature_is_its_id_plus_the_encoders_vector():
    torch.manual_seed(0)
    vocabulary = ContentVocabulary.from_movies(("id", "genres", "year", "title", "tags", "genome"), TAGGED)
    tower = ContentItemTower(len(TAGGED), 8, vocabulary, with_id=True, init_std=0.1)
    tower.set_tokens(encode_movies(TAGGED, vocabulary))
    assert tower.tokens_genome.dtype == torch.float16
    with torch.no_grad():
        expected = tower.embedding.weight + tower.content.encode(TAGGED)
        np.testing.assert_allclose(tower(torch.arange(4)).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
        # the tags and the genome are part of it: without them the vectors differ
        assert not np.allclose(tower.content.encode(MOVIES).numpy(), tower.content.encode(TAGGED).numpy())


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
        ({"item_features": ("id", "keywords")}, "model.item_features: unknown feature 'keywords'"),
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
