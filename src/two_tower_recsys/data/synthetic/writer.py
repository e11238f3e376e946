"""The zip: generate a spec's catalogue, audience and rating chunks and stream them into grouplens'
layout, with the spec recorded in a ``generator.json`` member that :func:`read_synthetic_spec` reads back.

Members are deflated with fixed dates, so the same spec gives the same bytes; ratings are CSV-encoded
and compressed on a second thread while the next chunk is generated.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
import zipfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from tqdm import tqdm

from two_tower_recsys.data.synthetic.audience import LAST_TIMESTAMP, make_audience
from two_tower_recsys.data.synthetic.catalogue import make_catalogue, movies_csv
from two_tower_recsys.data.synthetic.ratings import rating_chunks
from two_tower_recsys.errors import ConfigError, DataError
from two_tower_recsys.settings import SyntheticSpec, settings_from_mapping
from two_tower_recsys.utils.fileio import atomic_path

SPEC_MEMBER = "generator.json"
FORMAT_VERSION = 1  # bump when the output for a given spec changes: cached zips are then rewritten
RATINGS_HEADER = b"userId,movieId,rating,timestamp\n"
ZIP_LEVEL = 1  # deflate level: 5x smaller than raw CSV at a fraction of level 6's time
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member dates keep the zip byte-identical across runs


def write_synthetic_zip(path: Path, spec: SyntheticSpec, *, name: str, progress: bool = True) -> None:
    """Write a MovieLens-format zip generated from ``spec`` to ``path`` (atomically)."""
    root = np.random.SeedSequence(spec.seed)
    movie_seed, title_seed, user_seed, chunk_seed = root.spawn(4)
    catalogue = make_catalogue(spec, np.random.default_rng(movie_seed))
    audience = make_audience(spec, catalogue, np.random.default_rng(user_seed))
    first_rating = np.full(spec.movies, LAST_TIMESTAMP, dtype=np.int64)
    bar = tqdm(
        total=spec.ratings, desc="synth", unit=" ratings", unit_scale=True, disable=not progress,
        file=sys.stderr,
    )  # fmt: skip
    with bar, atomic_path(Path(path)) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        with archive.open(_member(f"{name}/ratings.csv"), "w", force_zip64=True) as handle:
            handle.write(RATINGS_HEADER)
            chunks = rating_chunks(catalogue, audience, chunk_seed, first_rating)
            _write_in_background(chunks, handle, bar)
        movies = movies_csv(catalogue, first_rating, np.random.default_rng(title_seed))
        archive.writestr(_member(f"{name}/movies.csv"), movies)
        archive.writestr(_member(f"{name}/{SPEC_MEMBER}"), _spec_json(spec))


def read_synthetic_spec(path: Path) -> SyntheticSpec | None:
    """The spec recorded in a zip by :func:`write_synthetic_zip`.

    None for any other file, including a zip from another version of the generator: its data would
    differ from what this version writes for the same spec, so callers should regenerate it.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            member = next((m for m in archive.namelist() if m.rsplit("/", 1)[-1] == SPEC_MEMBER), None)
            if member is None:
                return None
            payload = json.loads(archive.read(member))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path} is a damaged zip file ({exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: {member} is not valid JSON ({exc})") from None
    if not isinstance(payload, dict) or "spec" not in payload:
        raise DataError(f"{path}: {member} has no 'spec' entry")
    if payload.get("format_version") != FORMAT_VERSION:
        return None
    try:
        return settings_from_mapping(SyntheticSpec, payload["spec"], f"{member} spec")
    except ConfigError as exc:
        raise DataError(f"{path}: {exc}") from None


def _write_in_background(tables: Iterator[pa.Table], handle: BinaryIO, bar: tqdm) -> None:
    """Write each table while the next one is generated: CSV formatting and deflate release the
    GIL, so the second core compresses while the first samples. At most two chunks in memory."""
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending: tuple[Future[None], int] | None = None
        for table in tables:
            if pending is not None:
                pending[0].result()
                bar.update(pending[1])
            pending = writer.submit(_write_ratings_table, table, handle), table.num_rows
        if pending is not None:
            pending[0].result()
            bar.update(pending[1])


def _write_ratings_table(table: pa.Table, handle: BinaryIO) -> None:
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    handle.write(buffer.getbuffer())


# --- zip members --------------------------------------------------------------------------------


def _member(name: str) -> zipfile.ZipInfo:
    """A deflated zip member with a fixed date, so equal contents give equal zip bytes."""
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info._compresslevel = ZIP_LEVEL  # no public setter before Python 3.13 (compress_level)
    info.external_attr = 0o644 << 16
    return info


def _spec_json(spec: SyntheticSpec) -> str:
    payload = {
        # The package, as before it was split into modules: only informative, nothing reads it.
        "generator": "two_tower_recsys.data.synthetic",
        "format_version": FORMAT_VERSION,
        "spec": dataclasses.asdict(spec),
    }
    return json.dumps(payload, indent=2) + "\n"
