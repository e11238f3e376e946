"""Export the trained scorer to ONNX: ``(user_idx [N], item_idx [N]) -> score [N]``, N dynamic.

The exported network is a plain :class:`TwoTower` module (``forward`` is exactly the pairwise
scorer): the checkpoint's user tower, and as movie tower a constant table of the index's movie
vectors (``item_embeddings.pt``, what the server ranks by). For an id movie tower that table is
the checkpoint's own; for one that reads content it is each movie's final vector (id embedding +
content), so the scorer covers every catalogue movie, those that have no id embedding (too few
ratings to train, or added later) included, without exporting the content encoder. It is traced
with PyTorch's ``torch.export``-based exporter (the default since 2.9; the TorchScript one is
deprecated). Inputs are int64 indices, not original ids: map userId/movieId with
``user2idx.json`` / ``item2idx.json`` beside it. The weights are stored inside the one file.

The file's metadata records the ``index_id`` of the index it was exported with (key
``two_tower_recsys.index_id``); :func:`scoring_session` refuses a file exported before the index
beside it was retrained. The checkpoint is read with ``weights_only=True`` (no pickled objects).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from two_tower_recsys.artifacts.store import (
    CHECKPOINT,
    ITEM_EMBEDDINGS,
    index_id,
    refuse_if_stale,
    verified_manifest,
)
from two_tower_recsys.errors import ArtifactError
from two_tower_recsys.models.components.towers import IdEmbeddingTower
from two_tower_recsys.models.components.two_tower import TwoTower
from two_tower_recsys.utils.fileio import atomic_path

INPUT_NAMES = ("user_idx", "item_idx")
OUTPUT_NAME = "score"
INDEX_ID_KEY = "two_tower_recsys.index_id"
RERUN = "two-tower export-onnx"


@dataclass(frozen=True)
class OnnxExport:
    path: Path
    n_users: int
    n_items: int
    max_abs_difference: float  # ONNX Runtime vs PyTorch on random pairs


def load_scoring_network(artifacts_dir: Path, manifest: dict | None = None) -> TwoTower:
    """The checkpoint's user tower over the index's movie vectors, in eval mode (the index is
    verified first, unless the caller passes the manifest it has just verified)."""
    if manifest is None:
        manifest = verified_manifest(Path(artifacts_dir))
    if CHECKPOINT not in manifest.get("files", {}):
        raise ArtifactError(f"{artifacts_dir} has no {CHECKPOINT}; ONNX export needs the trained checkpoint")
    # Imported here: only exporting needs Lightning; serving never imports this module.
    from two_tower_recsys.training.checkpoint import load_two_tower_checkpoint

    module = load_two_tower_checkpoint(Path(artifacts_dir) / CHECKPOINT)
    if module.reads_histories:
        raise ArtifactError(
            "a sequence user tower (model.user_tower=sequence) has no (user_idx, item_idx) scorer; "
            "export its tower with inference.onnx_sequence_export (two-tower export-onnx does)"
        )
    item_embeddings = torch.load(Path(artifacts_dir) / ITEM_EMBEDDINGS, weights_only=True)
    return TwoTower(module.net.user_tower, movie_table(item_embeddings), module.net.temperature).eval()


def movie_table(item_embeddings: torch.Tensor) -> IdEmbeddingTower:
    """A frozen movie tower whose row ``i`` is ``item_embeddings[i]``."""
    tower = IdEmbeddingTower(*item_embeddings.shape)
    with torch.no_grad():
        tower.embedding.weight.copy_(item_embeddings)
    return tower.requires_grad_(False)


def scoring_session(onnx_path: Path, artifacts_dir: Path) -> object:
    """An ONNX Runtime session for ``onnx_path``, refused (one-line ArtifactError) when the index in
    ``artifacts_dir`` was retrained after the export."""
    import onnxruntime as ort

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ArtifactError(f"{onnx_path} does not exist; run `{RERUN}`")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    built_from = session.get_modelmeta().custom_metadata_map.get(INDEX_ID_KEY)
    refuse_if_stale(onnx_path, built_from, Path(artifacts_dir), RERUN)
    return session


def write_scoring_onnx(
    network: torch.nn.Module, path: Path, metadata: dict[str, str] | None = None
) -> onnx.ModelProto:
    """Write ``network(user_idx, item_idx)`` to ``path`` as a checked ONNX model (``metadata``
    goes into its ``metadata_props``)."""
    example = (torch.zeros(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int64))
    batch = torch.export.Dim("batch")
    with torch.no_grad(), warnings.catch_warnings():
        # Both inputs share the one batch Dim, which the exporter reports as a naming clash.
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints", category=UserWarning)
        program = torch.onnx.export(
            network,
            example,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_shapes={name: {0: batch} for name in INPUT_NAMES},
            dynamo=True,
            verbose=False,
        )
    model = program.model_proto
    onnx.helper.set_model_props(model, dict(metadata or {}))
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, path)  # weights inline: 165k x 64 floats is far below protobuf's 2 GB
    return model


def onnx_vs_torch(network: torch.nn.Module, onnx_path: Path, n_pairs: int = 4096, seed: int = 0) -> float:
    """Max |ONNX Runtime - PyTorch| score over random (user, item) pairs."""
    import onnxruntime as ort

    n_users, n_items = tower_sizes(network)
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_pairs, dtype=np.int64)
    items = rng.integers(0, n_items, n_pairs, dtype=np.int64)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (onnx_scores,) = session.run([OUTPUT_NAME], {INPUT_NAMES[0]: users, INPUT_NAMES[1]: items})
    with torch.no_grad():
        torch_scores = network(torch.from_numpy(users), torch.from_numpy(items)).numpy()
    return float(np.max(np.abs(onnx_scores - torch_scores)))


def tower_sizes(network: torch.nn.Module) -> tuple[int, int]:
    return int(network.user_tower.size), int(network.item_tower.size)


def export_from_artifacts(artifacts_dir: Path, destination: Path, tolerance: float = 1e-5) -> OnnxExport:
    """Export the checkpoint in ``artifacts_dir``; the file replaces ``destination`` only once
    ONNX Runtime agrees with PyTorch within ``tolerance``."""
    manifest = verified_manifest(Path(artifacts_dir))
    network = load_scoring_network(artifacts_dir, manifest)
    built_from = index_id(manifest)
    with atomic_path(destination) as tmp:
        write_scoring_onnx(network, tmp, {INDEX_ID_KEY: built_from})
        difference = onnx_vs_torch(network, tmp)
        if not difference <= tolerance:
            raise ArtifactError(f"ONNX export differs from PyTorch by {difference:.3g} (> {tolerance})")
    return OnnxExport(Path(destination), *tower_sizes(network), difference)
