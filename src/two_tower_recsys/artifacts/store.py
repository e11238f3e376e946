"""The offline index: what training leaves behind for inference and serving.

``artifacts/``: ``model.ckpt`` (Lightning checkpoint of the best epoch), ``item_embeddings.pt``
and ``user_embeddings.pt`` (float32 tensors), ``user2idx.json`` / ``item2idx.json``,
``titles.parquet``, ``seen_items.npz`` (each user's positives), ``rated_items.npz`` (every movie
each user rated, positive or not: by default never recommended again),
``popularity.npy`` (positives per movie: the cold-start fallback), for a user tower that reads
histories ``history_tower.pt`` (its weights but the movie table, which is ``item_embeddings.pt``:
what turns a fresh history into a user vector at inference; the manifest records its kind and
settings), and ``manifest.json`` (config, dataset checksum, package versions and every file's
sha256), written last.

:func:`load_index` verifies the manifest and loads only embeddings and lookups: serving needs
no Lightning and no checkpoint.

Files derived from an index (the ONNX scorer, the MLflow package) record its ``index_id``, a
digest of the index files' checksums; :func:`refuse_if_stale` refuses one that sits beside an
index it was not built from (the index was retrained since), naming the command to rerun.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from two_tower_recsys.errors import ArtifactError
from two_tower_recsys.models.components.content import ContentEncoder, ContentVocabulary
from two_tower_recsys.models.components.sequence_tower import SequenceTower
from two_tower_recsys.models.components.user_encoders import HistoryUserEncoder, history_encoder_class
from two_tower_recsys.preprocessing.processed import read_id_mapping, write_id_mapping
from two_tower_recsys.retrieval.scorers import EmbeddingScorer
from two_tower_recsys.retrieval.seen import SeenItems
from two_tower_recsys.utils.fileio import (
    MANIFEST_NAME,
    atomic_write_json,
    commit_staged_directory,
    read_json,
    staged_directory,
    verify_manifest,
    write_manifest,
)

FORMAT_VERSION = 2  # 2: rated_items.npz
CHECKPOINT = "model.ckpt"
ITEM_EMBEDDINGS = "item_embeddings.pt"
USER_EMBEDDINGS = "user_embeddings.pt"
USER_MAPPING = "user2idx.json"
ITEM_MAPPING = "item2idx.json"
TITLES = "titles.parquet"
SEEN_ITEMS = "seen_items.npz"
RATED_ITEMS = "rated_items.npz"
POPULARITY = "popularity.npy"
HISTORY_TOWER = "history_tower.pt"  # only for a user tower that reads histories
# Manifest keys beside it: the tower's index_settings(), and its kind (absent before a second
# kind existed: such an index holds a sequence tower).
HISTORY_TOWER_SETTINGS, HISTORY_TOWER_KIND = "history_tower", "history_tower_kind"
# Only for a movie tower that reads content: its ContentEncoder's weights, and beside it in the
# manifest its vocabulary; what gives a movie added later its vector (models/components/content.py).
MOVIE_CONTENT, MOVIE_CONTENT_VOCABULARY = "movie_content.pt", "movie_content"
INDEX_FILES = (
    ITEM_EMBEDDINGS,
    USER_EMBEDDINGS,
    USER_MAPPING,
    ITEM_MAPPING,
    TITLES,
    SEEN_ITEMS,
    RATED_ITEMS,
    POPULARITY,
)
_VERSIONED_PACKAGES = (
    "two-tower-recsys",
    "torch",
    "lightning",
    "numpy",
    "polars",
    "mlflow",
    "onnx",
    "onnxruntime",
)


@dataclass(frozen=True)
class RetrievalIndex:
    """Everything needed to score, filter and label recommendations."""

    user_embeddings: torch.Tensor  # [n_users, dim]
    item_embeddings: torch.Tensor  # [n_items, dim]
    temperature: float
    user_ids: np.ndarray  # user_idx -> userId
    item_ids: np.ndarray  # item_idx -> movieId
    titles: list[str]  # by item_idx
    seen: SeenItems  # each user's positives (what evaluation hides)
    popularity: np.ndarray  # positives per item_idx
    manifest: dict[str, Any]
    rated: SeenItems  # every movie each user rated, positive or not (a superset of ``seen``)
    # A user tower that reads histories (eval mode) over item_embeddings: user vectors of fresh
    # histories. None: the model's user tower reads user indices.
    history_tower: HistoryUserEncoder | None = None
    # The movie tower's content encoder (None: the movie tower reads ids only).
    movie_content: ContentEncoder | None = None

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def reads_histories(self) -> bool:
        """Whether the user vectors come from histories (so they depend on which ones are read)."""
        return self.history_tower is not None

    def scorer(self) -> EmbeddingScorer:
        return EmbeddingScorer(self.user_embeddings, self.item_embeddings, self.temperature)

    def excluded(self, exclude: str) -> SeenItems | None:
        """The movies never recommended under ``exclude`` (rated | positives | none)."""
        return {"rated": self.rated, "positives": self.seen, "none": None}[exclude]


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_index(
    directory: Path,
    *,
    checkpoint: Path | None,
    user_embeddings: torch.Tensor,
    item_embeddings: torch.Tensor,
    temperature: float,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    titles: pl.DataFrame,
    seen_pairs: pl.DataFrame,
    popularity: np.ndarray,
    provenance: dict[str, Any],
    rated_pairs: pl.DataFrame | None = None,
    history_tower: HistoryUserEncoder | None = None,
    movie_content: ContentEncoder | None = None,
) -> dict[str, Any]:
    """Stage every file, then commit them to ``directory`` with the manifest last.

    ``seen_pairs`` are the positives (user_idx, item_idx); ``rated_pairs`` every rating, positive
    or not (None: the positives are all that is known). The rated set stored is their union.
    ``history_tower``: a user tower that reads histories, whose movie table is ``item_embeddings``.
    ``movie_content``: the movie tower's content encoder, which gives movies added later a vector.
    """
    with staged_directory(directory) as staging:
        if checkpoint is not None:
            shutil.copyfile(checkpoint, staging / CHECKPOINT)
        torch.save(item_embeddings.detach().cpu().float().contiguous(), staging / ITEM_EMBEDDINGS)
        torch.save(user_embeddings.detach().cpu().float().contiguous(), staging / USER_EMBEDDINGS)
        write_id_mapping(staging / USER_MAPPING, user_ids)
        write_id_mapping(staging / ITEM_MAPPING, item_ids)
        titles.select("item_idx", "movieId", "title", "genres").write_parquet(staging / TITLES)
        _save_pairs(staging / SEEN_ITEMS, seen_pairs, len(user_ids))
        if rated_pairs is not None:
            rated_pairs = pl.concat(
                [seen_pairs.select(rated_pairs.columns), rated_pairs], how="vertical_relaxed"
            )
        _save_pairs(staging / RATED_ITEMS, seen_pairs if rated_pairs is None else rated_pairs, len(user_ids))
        np.save(staging / POPULARITY, np.asarray(popularity, dtype=np.int64))
        if history_tower is not None:
            torch.save(history_tower.index_weights(), staging / HISTORY_TOWER)
            provenance = {
                **provenance,
                HISTORY_TOWER_SETTINGS: history_tower.index_settings(),
                HISTORY_TOWER_KIND: history_tower.kind,
            }
        if movie_content is not None:
            torch.save(movie_content.state_dict(), staging / MOVIE_CONTENT)
            provenance = {**provenance, MOVIE_CONTENT_VOCABULARY: movie_content.vocabulary.as_dict()}
        manifest = write_manifest(
            staging,
            {
                "format_version": FORMAT_VERSION,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "temperature": float(temperature),
                "embedding_dim": int(item_embeddings.shape[1]),
                "n_users": len(user_ids),
                "n_items": len(item_ids),
                "versions": package_versions(),
                **provenance,
            },
        )
        # Recorded for readers outside this package (an ONNX consumer, a person); ours recompute it.
        manifest = {**manifest, "index_id": index_id(manifest)}
        atomic_write_json(staging / MANIFEST_NAME, manifest)
        commit_staged_directory(staging, directory)
    return manifest


def _index_files(manifest: dict[str, Any]) -> tuple[str, ...]:
    """The files that make up an index: every index has INDEX_FILES, a history-reading tower's one
    more, a content-reading movie tower's one more."""
    listed = manifest.get("files", {})
    return (*INDEX_FILES, *(name for name in (HISTORY_TOWER, MOVIE_CONTENT) if name in listed))


def stores_history_tower(manifest: dict[str, Any]) -> bool:
    """Whether the index's user tower reads histories (and so is stored, in ``HISTORY_TOWER``)."""
    return HISTORY_TOWER in manifest.get("files", {})


def index_id(manifest: dict[str, Any]) -> str:
    """The identity of an index: a digest of its files' checksums and its temperature (the
    checkpoint excluded, so a verified copy of the index has the same id as the original)."""
    files = manifest.get("files", {})
    listing = "".join(f"{name} {files.get(name, {}).get('sha256', '-')}\n" for name in _index_files(manifest))
    listing += f"temperature {float(manifest.get('temperature', 1.0))!r}\n"
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


def refuse_if_stale(derived: Path, built_from: str | None, index_dir: Path, rerun: str) -> None:
    """Refuse ``derived`` (built from the index ``built_from``) if ``index_dir`` holds another index.

    A directory without an index manifest is no claim: a package downloaded from the registry or
    copied elsewhere stands on its own (it carries its own verified copy of the index).
    """
    manifest_path = Path(index_dir) / MANIFEST_NAME
    try:
        manifest = read_json(manifest_path)
    except (OSError, ValueError):
        return
    if not isinstance(manifest, dict) or any(name not in manifest.get("files", {}) for name in INDEX_FILES):
        return
    current = index_id(manifest)
    if built_from != current:
        raise ArtifactError(
            f"{derived} was built from another index ({built_from or 'unrecorded'}) than the one in "
            f"{index_dir} ({current}, trained {manifest.get('created_at', '?')}); rerun `{rerun}`"
        )


def _save_pairs(path: Path, pairs: pl.DataFrame, n_users: int) -> None:
    users = pairs.get_column("user_idx").to_numpy()
    seen = SeenItems.from_pairs(users, pairs.get_column("item_idx").to_numpy(), n_users)
    np.savez(path, indptr=seen.indptr.numpy(), indices=seen.indices.numpy())


def _load_pairs(path: Path) -> SeenItems:
    arrays = np.load(path)
    return SeenItems(torch.from_numpy(arrays["indptr"]), torch.from_numpy(arrays["indices"]))


def verified_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of an index directory whose files all match it (else a one-line ArtifactError)."""
    try:
        manifest = verify_manifest(directory, "artifacts")
    except ValueError as exc:
        raise ArtifactError(f"{exc}; run `two-tower train` to (re)create them") from None
    missing = [name for name in INDEX_FILES if name not in manifest.get("files", {})]
    if missing or manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"artifacts in {directory} are from another version (missing {', '.join(missing) or '-'})"
        )
    return manifest


def copy_index(
    source: Path, destination: Path, add_files: Callable[[Path], dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Copy the index files, not the checkpoint, into the new directory ``destination``.

    The copy gets a manifest of its own (the source's provenance, its own file list), so
    :func:`load_index` verifies it like the original; serving packages hold such a copy. Each
    copied file must match the checksum the source manifest vouches for. ``add_files`` may write
    more files into the copy before its manifest (e.g. an ANN graph) and returns manifest entries.
    """
    source, destination = Path(source), Path(destination)
    manifest = verified_manifest(source)
    destination.mkdir(parents=True)
    index_files = _index_files(manifest)
    for name in index_files:
        shutil.copyfile(source / name, destination / name)
    provenance = {key: value for key, value in manifest.items() if key != "files"}
    if add_files is not None:
        provenance.update(add_files(destination))
    copied = write_manifest(destination, provenance)
    changed = [
        name for name in index_files if copied["files"][name]["sha256"] != manifest["files"][name]["sha256"]
    ]
    if changed:
        raise ArtifactError(f"{', '.join(changed)} in {source} changed while being copied; try again")
    return copied


def load_index(directory: Path) -> RetrievalIndex:
    """Load the index after checking every file against the manifest (one-line ArtifactError)."""
    directory = Path(directory)
    manifest = verified_manifest(directory)
    item_embeddings = torch.load(directory / ITEM_EMBEDDINGS, weights_only=True)
    return RetrievalIndex(
        user_embeddings=torch.load(directory / USER_EMBEDDINGS, weights_only=True),
        item_embeddings=item_embeddings,
        temperature=float(manifest["temperature"]),
        user_ids=read_id_mapping(directory / USER_MAPPING),
        item_ids=read_id_mapping(directory / ITEM_MAPPING),
        titles=pl.read_parquet(directory / TITLES).sort("item_idx").get_column("title").to_list(),
        seen=_load_pairs(directory / SEEN_ITEMS),
        popularity=np.load(directory / POPULARITY),
        manifest=manifest,
        rated=_load_pairs(directory / RATED_ITEMS),
        history_tower=_load_history_tower(directory, manifest, item_embeddings),
        movie_content=_load_movie_content(directory, manifest, int(item_embeddings.shape[1])),
    )


def _load_movie_content(directory: Path, manifest: dict[str, Any], dim: int) -> ContentEncoder | None:
    if MOVIE_CONTENT not in manifest.get("files", {}):
        return None
    try:
        vocabulary = ContentVocabulary.from_dict(manifest[MOVIE_CONTENT_VOCABULARY])
        encoder = ContentEncoder(vocabulary, dim)
        encoder.load_state_dict(torch.load(directory / MOVIE_CONTENT, weights_only=True))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        path = directory / MOVIE_CONTENT
        raise ArtifactError(f"{path} does not load as a content encoder: {exc}") from None
    return encoder.eval()


def _load_history_tower(
    directory: Path, manifest: dict[str, Any], item_embeddings: torch.Tensor
) -> HistoryUserEncoder | None:
    if not stores_history_tower(manifest):
        return None
    kind = manifest.get(HISTORY_TOWER_KIND, SequenceTower.kind)
    try:
        encoder = history_encoder_class(kind)
        weights = torch.load(directory / HISTORY_TOWER, weights_only=True)
        return encoder.from_index(manifest[HISTORY_TOWER_SETTINGS], item_embeddings, weights)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ArtifactError(
            f"{directory / HISTORY_TOWER} does not load as a {kind} user tower: {exc}"
        ) from None
