"""Export a sequence user tower to ONNX: ``(history [N, L], lengths [N]) -> user_vector [N, dim]``.

``history`` holds int64 item indices, oldest first, right-padded (any valid index; the tower is
causal and reads positions ``< lengths`` only); both N and L (1..max_history) are dynamic. The
movie vectors are ``item_embeddings.pt`` in the index; score = dot(user_vector, movie) /
temperature. Written only once ONNX Runtime agrees with PyTorch on random histories.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from two_tower_recsys.errors import ArtifactError
from two_tower_recsys.models.components.sequence_tower import SequenceTower
from two_tower_recsys.utils.fileio import atomic_path

USER_TOWER_ONNX = "user_tower.onnx"  # written beside paths.onnx_model
INPUT_NAMES = ("history", "lengths")
OUTPUT_NAME = "user_vector"


@dataclass(frozen=True)
class SequenceTowerExport:
    path: Path
    max_history: int
    dim: int
    max_abs_difference: float  # ONNX Runtime vs PyTorch on random histories


def write_sequence_tower_onnx(tower: SequenceTower, path: Path) -> onnx.ModelProto:
    example = (torch.zeros(2, tower.max_history, dtype=torch.int64), torch.ones(2, dtype=torch.int64))
    batch = torch.export.Dim("batch")
    length = torch.export.Dim("length", min=1, max=tower.max_history)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        program = torch.onnx.export(
            tower.eval(),
            example,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"history": {0: batch, 1: length}, "lengths": {0: batch}},
            dynamo=True,
            verbose=False,
        )
    model = program.model_proto
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, path)
    return model


def onnx_vs_torch(tower: SequenceTower, onnx_path: Path, n_histories: int = 512, seed: int = 0) -> float:
    """Max |ONNX Runtime - PyTorch| over random histories of several widths and lengths."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    n_items = tower.item_embedding.num_embeddings
    rng = np.random.default_rng(seed)
    worst = 0.0
    for width in sorted({1, max(1, tower.max_history // 3), tower.max_history}):
        history = rng.integers(0, n_items, (n_histories, width), dtype=np.int64)
        lengths = rng.integers(1, width + 1, n_histories, dtype=np.int64)
        (onnx_vectors,) = session.run([OUTPUT_NAME], {INPUT_NAMES[0]: history, INPUT_NAMES[1]: lengths})
        with torch.no_grad():
            torch_vectors = tower.eval()(torch.from_numpy(history), torch.from_numpy(lengths)).numpy()
        worst = max(worst, float(np.max(np.abs(onnx_vectors - torch_vectors))))
    return worst


def export_sequence_tower(
    tower: SequenceTower, destination: Path, tolerance: float = 1e-5
) -> SequenceTowerExport:
    """The file replaces ``destination`` only once ONNX Runtime agrees within ``tolerance``."""
    with atomic_path(destination) as tmp:
        write_sequence_tower_onnx(tower, tmp)
        difference = onnx_vs_torch(tower, tmp)
        if not difference <= tolerance:
            raise ArtifactError(f"ONNX export differs from PyTorch by {difference:.3g} (> {tolerance})")
    return SequenceTowerExport(Path(destination), tower.max_history, tower.dim, difference)
