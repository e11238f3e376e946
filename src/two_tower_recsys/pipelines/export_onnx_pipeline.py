"""``two-tower export-onnx``: write ``paths.onnx_model`` (default ``artifacts/model_scoring.onnx``).

The scorer ``(user_idx [N], item_idx [N]) -> score [N]`` with a dynamic batch axis, exported from
the trained checkpoint's user tower and the index's movie vectors (every catalogue movie) and kept
only if ONNX Runtime matches PyTorch within 1e-5. A user tower that reads histories
(``model.user_tower=sequence``) is exported instead as ``user_tower.onnx`` beside it:
``(history, lengths) -> user vector`` (see ``inference/onnx_sequence_export.py``), the tower the
server runs: around the index's movie vectors, so a history may name any catalogue movie.
"""

from __future__ import annotations

from two_tower_recsys.artifacts.store import load_index, stores_history_tower, verified_manifest
from two_tower_recsys.inference.onnx_export import export_from_artifacts
from two_tower_recsys.inference.onnx_sequence_export import USER_TOWER_ONNX, export_sequence_tower
from two_tower_recsys.pipelines.hydra_edge import hydra_entry
from two_tower_recsys.settings import AppConfig


def run(settings: AppConfig) -> None:
    artifacts_dir = settings.paths.artifacts_dir
    if stores_history_tower(verified_manifest(artifacts_dir)):
        tower = load_index(artifacts_dir).history_tower
        exported = export_sequence_tower(tower, settings.paths.onnx_model.with_name(USER_TOWER_ONNX))
        print(
            f"wrote {exported.path}: (history [N, L <= {exported.max_history}], lengths [N]) -> user "
            f"vector [N, {exported.dim}]; max |onnxruntime - torch| = {exported.max_abs_difference:.2e}"
        )
        return
    export = export_from_artifacts(settings.paths.artifacts_dir, settings.paths.onnx_model)
    print(
        f"wrote {export.path}: (user_idx, item_idx) -> score for {export.n_users} users x "
        f"{export.n_items} movies; max |onnxruntime - torch| = {export.max_abs_difference:.2e}"
    )


main = hydra_entry(run)

if __name__ == "__main__":
    main()
