"""``two-tower export-onnx``: write ``paths.onnx_model`` (default ``artifacts/model_scoring.onnx``).

The scorer ``(user_idx [N], item_idx [N]) -> score [N]`` with a dynamic batch axis, exported from
the trained checkpoint and kept only if ONNX Runtime matches PyTorch within 1e-5.
"""

from __future__ import annotations

from two_tower_recsys.inference.onnx_export import export_from_artifacts
from two_tower_recsys.pipelines.hydra_edge import hydra_entry
from two_tower_recsys.settings import AppConfig


def run(settings: AppConfig) -> None:
    export = export_from_artifacts(settings.paths.artifacts_dir, settings.paths.onnx_model)
    print(
        f"wrote {export.path}: (user_idx, item_idx) -> score for {export.n_users} users x "
        f"{export.n_items} movies; max |onnxruntime - torch| = {export.max_abs_difference:.2e}"
    )


main = hydra_entry(run)

if __name__ == "__main__":
    main()
