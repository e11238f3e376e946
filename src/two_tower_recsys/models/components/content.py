"""What a movie *is*, as features the movie tower can read: genres, release year, title words,
tags and the tag genome.

Every feature but the genome is a small vocabulary of tokens; a movie holds a few tokens of each
(padded with 0, which means "nothing"). :class:`ContentEncoder` embeds each feature's tokens,
averages them, adds the genome projected linearly, and sums the features: a linear model of the
content, one vector per movie.

- ``genres``: one token per genre of ``movies.csv`` (``Adventure|Animation|...``); the
  vocabulary is the genres of the training catalogue, sorted. ``(no genres listed)`` and an empty
  field are no token (neutral: that feature adds nothing). A genre outside the vocabulary is an
  error for movies added later (:func:`encode_movies` names the row): the tower never learned it.
- ``year``: the release year parsed from the title's end, ``Toy Story (1995)`` (or a range,
  ``(2006-2007)``: its first year), in :data:`YEAR_BUCKET_YEARS`-year buckets from
  :data:`FIRST_YEAR` (earlier years share the first bucket, later ones the last). A title without
  a year is no token (neutral).
- ``title``: the title's words (lower case, the year and punctuation removed, a few stop words
  dropped), each hashed (CRC-32, stable across processes, no vocabulary to download) into
  :data:`TITLE_HASH_BUCKETS` buckets; at most :data:`MAX_TITLE_WORDS` words.
- ``tags``: the movie's users' tags (the ``tags`` column, normalised and most-used first:
  :mod:`~two_tower_recsys.data.movie_content`). The vocabulary is the tags found on at least
  :data:`TAG_MIN_MOVIES` movies of the training catalogue, sorted (a rarer tag says nothing
  learnable); a movie holds its first :data:`MAX_TAGS` tags in the vocabulary. A movie without
  tags (or without the column: movies added later) is no token (neutral).
- ``genome``: the tag genome's relevance vector (the ``genome`` column, float16), projected by a
  learned linear map without bias, so a movie without genome scores (a null, or no column) is the
  zero vector: neutral.

Nothing is fitted but the genre and tag lists (and the genome's width), so a movie added after
training is encoded exactly as the training catalogue was.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import polars as pl
import torch
from torch import nn

from two_tower_recsys.errors import DataError
from two_tower_recsys.models.components.towers import Tower

CONTENT_FEATURES = ("genres", "year", "title", "tags", "genome")
TOKEN_FEATURES = ("genres", "year", "title", "tags")  # the genome is a dense vector, not tokens
NO_GENRES = "(no genres listed)"
FIRST_YEAR, LAST_YEAR = 1900, 2035
YEAR_BUCKET_YEARS = 5  # a movie's era, not its exact year: 27 buckets over 1900-2035
TITLE_HASH_BUCKETS = 8192  # collisions among ~20k distinct title words are rare enough
MAX_TITLE_WORDS = 16
MAX_GENRES = 12  # MovieLens has 20 genres; no movie has more than 10
TAG_MIN_MOVIES = 3  # ml-latest-small: 1,475 distinct tags, 324 on 3+ movies; most are one user's note
MAX_TAGS = 16  # ml-latest-small: a tagged movie has 2.3 distinct tags on average, the most 173
STOP_WORDS = frozenset(("the", "a", "an", "of", "and", "in", "on", "to", "la", "le", "de", "el", "der"))
_YEAR = re.compile(r"\((\d{4})(?:\s*[-–]\s*\d{4})?\)\s*$")
_WORD = re.compile(r"[^\W_]+")  # runs of letters or digits, any script (Cité, Amélie)


@dataclass(frozen=True)
class ContentVocabulary:
    """Which features the tower reads and their token counts: all it needs to encode a movie."""

    features: tuple[str, ...]
    genres: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    genome_dim: int = 0  # relevance values per movie

    @classmethod
    def from_movies(cls, features: tuple[str, ...], movies: pl.DataFrame) -> ContentVocabulary:
        """Fitted on ``movies``, the training catalogue (with a ``tags`` / ``genome`` column when
        those features are asked for: ``prepare_dataset(item_features=...)`` reads them)."""
        for feature in ("tags", "genome"):
            if feature in features and feature not in movies.columns:
                raise DataError(f"model.item_features: {feature} asked for, but the movies have no {feature}")
        genres: set[str] = set()
        if "genres" in features:
            for field in movies.get_column("genres").drop_nulls().to_list():
                genres.update(name for name in field.split("|") if name and name != NO_GENRES)
        tags: tuple[str, ...] = ()
        if "tags" in features:
            counts = movies.get_column("tags").explode().drop_nulls().value_counts(name="movies")
            tags = tuple(
                sorted(counts.filter(pl.col("movies") >= TAG_MIN_MOVIES).get_column("tags").to_list())
            )
        genome_dim = movies.schema["genome"].size if "genome" in features else 0
        return cls(
            tuple(f for f in CONTENT_FEATURES if f in features), tuple(sorted(genres)), tags, genome_dim
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContentVocabulary:
        return cls(
            tuple(data["features"]),
            tuple(data.get("genres", ())),
            tuple(data.get("tags", ())),
            int(data.get("genome_dim", 0)),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()
        }

    @property
    def token_features(self) -> tuple[str, ...]:
        return tuple(feature for feature in self.features if feature in TOKEN_FEATURES)

    def sizes(self) -> dict[str, int]:
        """Tokens per token feature, the padding token 0 included."""
        counts = {
            "genres": len(self.genres),
            "year": _year_bucket(LAST_YEAR),
            "title": TITLE_HASH_BUCKETS,
            "tags": len(self.tags),
        }
        return {feature: counts[feature] + 1 for feature in self.token_features}

    def widths(self) -> dict[str, int]:
        """Slots per movie and feature: tokens, or the genome's relevance values."""
        return {
            "genres": MAX_GENRES,
            "year": 1,
            "title": MAX_TITLE_WORDS,
            "tags": MAX_TAGS,
            "genome": self.genome_dim,
        }


def _year_bucket(year: int) -> int:
    """1.. (0 is "no year")."""
    return 1 + (min(max(year, FIRST_YEAR), LAST_YEAR) - FIRST_YEAR) // YEAR_BUCKET_YEARS


def release_year(title: str) -> int | None:
    match = _YEAR.search(title)
    return int(match.group(1)) if match else None


def title_words(title: str) -> list[str]:
    words = _WORD.findall(_YEAR.sub("", title).lower())
    return [word for word in words if word not in STOP_WORDS][:MAX_TITLE_WORDS]


def _title_token(word: str) -> int:
    return 1 + zlib.crc32(word.encode()) % TITLE_HASH_BUCKETS


def encode_movies(
    movies: pl.DataFrame, vocabulary: ContentVocabulary, *, strict: bool = False
) -> dict[str, np.ndarray]:
    """Per feature of ``movies`` (title, genres; tags and genome where the columns are there):
    tokens [len(movies), width] (int64, 0-padded), or the genome [len(movies), genome_dim] (float16,
    zero for a movie without one).

    ``strict`` (movies added after training): a genre the vocabulary lacks is a DataError naming
    the row; in training every genre is in the vocabulary by construction. A tag outside the
    vocabulary is simply not a token (the vocabulary keeps only the common ones, by design).
    """
    widths = vocabulary.widths()
    tokens = {
        feature: np.zeros((movies.height, widths[feature]), dtype=np.int64)
        for feature in vocabulary.token_features
    }
    if "tags" in tokens and "tags" in movies.columns:
        _encode_tags(movies.get_column("tags"), vocabulary.tags, tokens["tags"])
    if "genome" in vocabulary.features:
        tokens["genome"] = _genome_rows(movies, vocabulary.genome_dim)
    genre_token = {name: index + 1 for index, name in enumerate(vocabulary.genres)}
    titles = movies.get_column("title").fill_null("").to_list()
    genre_fields = movies.get_column("genres").fill_null("").to_list()
    for row, (title, genres) in enumerate(zip(titles, genre_fields, strict=True)):
        if "genres" in tokens:
            names = [name for name in genres.split("|") if name and name != NO_GENRES]
            unknown = [name for name in names if name not in genre_token]
            if unknown and strict:
                raise DataError(
                    f"row {row}: unknown genre {unknown[0]!r} "
                    f"(the model knows {', '.join(vocabulary.genres)})"
                )
            known = [genre_token[name] for name in names if name in genre_token][: widths["genres"]]
            tokens["genres"][row, : len(known)] = known
        if "year" in tokens:
            year = release_year(title)
            tokens["year"][row, 0] = 0 if year is None else _year_bucket(year)
        if "title" in tokens:
            words = [_title_token(word) for word in title_words(title)]
            tokens["title"][row, : len(words)] = words
    return tokens


def _encode_tags(tags: pl.Series, vocabulary: tuple[str, ...], out: np.ndarray) -> None:
    """Fill ``out`` [rows, MAX_TAGS] with each row's first tags (in list order) that the
    vocabulary knows, vectorised: one exploded frame, no per-movie Python."""
    known = pl.DataFrame({"tag": list(vocabulary), "token": np.arange(1, len(vocabulary) + 1)})
    slots = (
        pl.DataFrame({"tag": tags})
        .with_row_index("row")
        .explode("tag")
        .join(known, on="tag", how="inner", maintain_order="left")
        .with_columns(pl.int_range(pl.len()).over("row").alias("slot"))
        .filter(pl.col("slot") < out.shape[1])
    )
    out[slots.get_column("row").to_numpy(), slots.get_column("slot").to_numpy()] = slots.get_column(
        "token"
    ).to_numpy()


def _genome_rows(movies: pl.DataFrame, genome_dim: int) -> np.ndarray:
    """The ``genome`` column as [rows, genome_dim] float16, zero rows where it is null or absent."""
    if "genome" not in movies.columns:
        return np.zeros((movies.height, genome_dim), dtype=np.float16)
    column = movies.get_column("genome")
    width = column.dtype.size if isinstance(column.dtype, pl.Array) else None
    if width != genome_dim:
        raise DataError(f"the movies' genome has {width} relevance values, the model reads {genome_dim}")
    rows = np.asarray(column.to_numpy(), dtype=np.float16).reshape(movies.height, genome_dim)
    rows[column.is_null().to_numpy()] = 0
    return rows


class ContentEncoder(nn.Module):
    """Feature tokens -> one vector per movie: the sum over features of the mean token embedding,
    plus the genome's linear projection."""

    def __init__(self, vocabulary: ContentVocabulary, dim: int, *, init_std: float = 0.01):
        super().__init__()
        self.vocabulary = vocabulary
        self.dim = dim
        self.tables = nn.ModuleDict(
            {feature: nn.Embedding(size, dim, padding_idx=0) for feature, size in vocabulary.sizes().items()}
        )
        for table in self.tables.values():
            nn.init.normal_(table.weight, std=init_std)
            with torch.no_grad():
                table.weight[0].zero_()  # padding: "nothing" adds nothing
        # No bias: a movie without genome scores (zero vector) must get nothing from it.
        self.genome = (
            nn.Linear(vocabulary.genome_dim, dim, bias=False) if "genome" in vocabulary.features else None
        )
        if self.genome is not None:
            # Scaled by the width so a movie's projection starts as small as a token embedding
            # (relevance values are at most 1): ~1,128 terms would otherwise swamp the rest.
            nn.init.normal_(self.genome.weight, std=init_std / max(vocabulary.genome_dim, 1) ** 0.5)

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        rows = next(iter(tokens.values())).shape[0]
        vectors = torch.zeros(rows, self.dim, device=next(self.parameters()).device)
        for feature, table in self.tables.items():
            ids = tokens[feature]
            count = (ids > 0).sum(dim=1, keepdim=True).clamp(min=1)
            vectors = vectors + table(ids).sum(dim=1) / count
        if self.genome is not None:
            vectors = vectors + self.genome(tokens["genome"].to(self.genome.weight.dtype))
        return vectors

    @torch.no_grad()
    def encode(self, movies: pl.DataFrame, *, strict: bool = False) -> torch.Tensor:
        """Content vectors [len(movies), dim] of a table of movies (title, genres)."""
        arrays = encode_movies(movies, self.vocabulary, strict=strict)
        return self({feature: torch.from_numpy(array) for feature, array in arrays.items()})


class ContentItemTower(Tower):
    """The movie tower that reads content: ``id embedding + content vector`` (either may be absent).

    ``size`` movies of the training catalogue, whose tokens are buffers (saved in the checkpoint,
    so a restored tower needs no data). A movie that has no id embedding (one added after
    training, or below ``data.min_item_interactions``) is its content vector alone
    (:meth:`ContentEncoder.encode`), the same encoder the trained movies' vectors sum in.
    ``id_dropout``: the share of training rows whose id embedding is left out.
    """

    kind: ClassVar[str] = "content"

    def __init__(
        self,
        size: int,
        dim: int,
        vocabulary: ContentVocabulary,
        *,
        with_id: bool,
        init_std: float = 0.01,
        sparse: bool = False,
        id_dropout: float = 0.0,
    ):
        super().__init__()
        self.size, self.dim = size, dim
        self.id_dropout = id_dropout
        # sparse, as the id tower's: the optimizer touches only the batch's rows of this table.
        self.embedding = nn.Embedding(size, dim, sparse=sparse) if with_id else None
        if self.embedding is not None:
            nn.init.normal_(self.embedding.weight, std=init_std)
        self.content = ContentEncoder(vocabulary, dim, init_std=init_std)
        for feature, width in vocabulary.widths().items():
            if feature in vocabulary.features:
                # The genome is stored as float16 (half the memory: relevance needs no more).
                dtype = torch.float16 if feature == "genome" else torch.int64
                self.register_buffer(f"tokens_{feature}", torch.zeros(size, width, dtype=dtype))

    def set_tokens(self, tokens: dict[str, np.ndarray]) -> None:
        for feature, array in tokens.items():
            getattr(self, f"tokens_{feature}").copy_(torch.from_numpy(array))

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        tokens = {
            feature: getattr(self, f"tokens_{feature}")[indices]
            for feature in self.content.vocabulary.features
        }
        vectors = self.content(tokens)
        if self.embedding is None:
            return vectors
        ids = self.embedding(indices)
        if self.training and self.id_dropout:
            # Train the content part to stand alone for a share of the rows, as it must for a
            # movie that has no id embedding (cold start); inference always adds the id.
            kept = torch.rand(len(indices), 1, device=ids.device) >= self.id_dropout
            ids = ids * kept
        return vectors + ids
