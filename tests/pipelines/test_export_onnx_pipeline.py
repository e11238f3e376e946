"""`two-tower export-onnx` on a really trained model, and its error without a checkpoint."""

import subprocess
import sys

import onnx
import pytest
from inference_support import train_tiny_model, write_known_index
from support import run_cli

pytestmark = pytest.mark.slow


def test_cli_writes_the_onnx_scorer_beside_the_artifacts(tmp_path):
    artifacts = train_tiny_model(tmp_path / "run")
    result = run_cli(["export-onnx", f"paths.artifacts_dir={artifacts}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "max |onnxruntime - torch|" in result.stdout
    onnx.checker.check_model(onnx.load(artifacts / "model_scoring.onnx"))


def test_module_entry_point_without_a_checkpoint_is_a_one_line_error(tmp_path):
    artifacts = write_known_index(tmp_path / "artifacts")
    command = [sys.executable, "-m", "two_tower_recsys.pipelines.export_onnx_pipeline"]
    result = subprocess.run(
        [*command, f"paths.artifacts_dir={artifacts}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"error: {artifacts} has no model.ckpt; ONNX export needs the trained checkpoint"
    )
    assert not (artifacts / "model_scoring.onnx").exists()
