"""What a movie *is*, as tokens the movie tower can read: genres, release year, title words.

Every feature is a small vocabulary of tokens; a movie holds a few tokens of each feature
(padded with 0, which means "nothing"). :class:`ContentEncoder` embeds each feature's tokens,
averages them, and sums the features: a linear model of the content, one vector per movie.

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

Nothing is fitted but the genre list, so a movie added after training is encoded exactly as
the training catalogue was.
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

CONTENT_FEATURES = ("genres", "year", "title")
NO_GENRES = "(no genres listed)"
FIRST_YEAR, LAST_YEAR = 1900, 2035
YEAR_BUCKET_YEARS = 5  # a movie's era, not its exact year: 27 buckets over 1900-2035
TITLE_HASH_BUCKETS = 8192  # collisions among ~20k distinct title words are rare enough
MAX_TITLE_WORDS = 16
MAX_GENRES = 12  # MovieLens has 20 genres; no movie has more than 10
STOP_WORDS = frozenset(("the", "a", "an", "of", "and", "in", "on", "to", "la", "le", "de", "el", "der"))
_YEAR = re.compile(r"\((\d{4})(?:\s*[-–]\s*\d{4})?\)\s*$")
_WORD = re.compile(r"[^\W_]+")  # runs of letters or digits, any script (Cité, Amélie)


@dataclass(frozen=True)
class ContentVocabulary:
    """Which features the tower reads and their token counts: all it needs to encode a movie."""

    features: tuple[str, ...]
    genres: tuple[str, ...] = ()

    @classmethod
    def from_movies(cls, features: tuple[str, ...], movies: pl.DataFrame) -> ContentVocabulary:
        genres: set[str] = set()
        if "genres" in features:
            for field in movies.get_column("genres").drop_nulls().to_list():
                genres.update(name for name in field.split("|") if name and name != NO_GENRES)
        return cls(tuple(f for f in CONTENT_FEATURES if f in features), tuple(sorted(genres)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContentVocabulary:
        return cls(tuple(data["features"]), tuple(data.get("genres", ())))

    def as_dict(self) -> dict[str, Any]:
        return {key: list(value) for key, value in asdict(self).items()}

    def sizes(self) -> dict[str, int]:
        """Tokens per feature, the padding token 0 included."""
        counts = {"genres": len(self.genres), "year": _year_bucket(LAST_YEAR), "title": TITLE_HASH_BUCKETS}
        return {feature: counts[feature] + 1 for feature in self.features}

    @staticmethod
    def widths() -> dict[str, int]:
        """Token slots per movie and feature."""
        return {"genres": MAX_GENRES, "year": 1, "title": MAX_TITLE_WORDS}


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
    """Tokens [len(movies), width] (int64, 0-padded) per feature of ``movies`` (title, genres).

    ``strict`` (movies added after training): a genre the vocabulary lacks is a DataError naming
    the row; in training every genre is in the vocabulary by construction.
    """
    widths = vocabulary.widths()
    tokens = {
        feature: np.zeros((movies.height, widths[feature]), dtype=np.int64) for feature in vocabulary.features
    }
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


class ContentEncoder(nn.Module):
    """Feature tokens -> one vector per movie: the sum over features of the mean token embedding."""

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

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        rows = next(iter(tokens.values())).shape[0]
        vectors = torch.zeros(rows, self.dim, device=self.tables[self.vocabulary.features[0]].weight.device)
        for feature, table in self.tables.items():
            ids = tokens[feature]
            count = (ids > 0).sum(dim=1, keepdim=True).clamp(min=1)
            vectors = vectors + table(ids).sum(dim=1) / count
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
                self.register_buffer(f"tokens_{feature}", torch.zeros(size, width, dtype=torch.int64))

    def set_tokens(self, tokens: dict[str, np.ndarray]) -> None:
        for feature, array in tokens.items():
            getattr(self, f"tokens_{feature}").copy_(torch.from_numpy(array))

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        tokens = {feature: getattr(self, f"tokens_{feature}")[indices] for feature in self.content.tables}
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
