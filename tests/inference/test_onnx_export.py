"""The ONNX scorer against PyTorch, with onnxruntime for real."""

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from inference_support import write_known_index

from two_tower_recsys.artifacts.store import index_id, load_index, verified_manifest
from two_tower_recsys.errors import ArtifactError
from two_tower_recsys.inference.onnx_export import (
    INDEX_ID_KEY,
    export_from_artifacts,
    onnx_vs_torch,
    scoring_session,
    write_scoring_onnx,
)
from two_tower_recsys.models.components.towers import IdEmbeddingTower
from two_tower_recsys.models.components.two_tower import TwoTower

N_USERS, N_ITEMS = 50, 80


@pytest.fixture(scope="module")
def network() -> TwoTower:
    torch.manual_seed(0)
    return TwoTower(IdEmbeddingTower(N_USERS, 16), IdEmbeddingTower(N_ITEMS, 16), temperature=0.7).eval()


@pytest.fixture(scope="module")
def onnx_path(network, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model_scoring.onnx"
    write_scoring_onnx(network, path)
    return path


def test_model_is_checked_with_int64_inputs_and_one_dynamic_batch_axis(onnx_path):
    model = onnx.load(onnx_path)
    onnx.checker.check_model(model, full_check=True)
    inputs = {value.name: value.type.tensor_type for value in model.graph.input}
    assert set(inputs) == {"user_idx", "item_idx"}
    assert all(t.elem_type == onnx.TensorProto.INT64 for t in inputs.values())
    (output,) = model.graph.output
    assert output.name == "score" and output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    for tensor_type in [*inputs.values(), output.type.tensor_type]:
        (dim,) = tensor_type.shape.dim
        assert dim.dim_param and not dim.HasField("dim_value")  # symbolic: any batch size
    assert not list(onnx_path.parent.glob("*.data"))  # weights inside the one file


@pytest.mark.parametrize("batch", [1, 7, 4096])
def test_onnxruntime_matches_torch_on_random_pairs(network, onnx_path, batch):
    rng = np.random.default_rng(batch)
    users = rng.integers(0, N_USERS, batch, dtype=np.int64)
    items = rng.integers(0, N_ITEMS, batch, dtype=np.int64)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (scores,) = session.run(["score"], {"user_idx": users, "item_idx": items})
    with torch.no_grad():
        expected = network(torch.from_numpy(users), torch.from_numpy(items)).numpy()
    assert scores.shape == (batch,)
    assert np.max(np.abs(scores - expected)) <= 1e-5
    assert onnx_vs_torch(network, onnx_path, n_pairs=batch, seed=batch) <= 1e-5


def test_export_needs_a_checkpoint(known_index_dir, tmp_path):
    with pytest.raises(ArtifactError, match="has no model.ckpt"):
        export_from_artifacts(known_index_dir, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.slow
def test_trained_checkpoint_exports_the_scores_the_server_ranks_by(trained_artifacts, tmp_path):
    exported = export_from_artifacts(trained_artifacts, tmp_path / "model_scoring.onnx")
    assert exported.max_abs_difference <= 1e-5
    rng = np.random.default_rng(0)
    users = rng.integers(0, exported.n_users, 1000, dtype=np.int64)
    items = rng.integers(0, exported.n_items, 1000, dtype=np.int64)
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    (scores,) = session.run(["score"], {"user_idx": users, "item_idx": items})
    served = load_index(trained_artifacts).scorer().score(torch.from_numpy(users))
    assert np.max(np.abs(scores - served[np.arange(1000), items].numpy())) <= 1e-5


@pytest.mark.slow
def test_an_export_older_than_the_index_beside_it_is_refused(trained_artifacts, tmp_path):
    artifacts = shutil.copytree(trained_artifacts, tmp_path / "artifacts")
    onnx_path = export_from_artifacts(artifacts, artifacts / "model_scoring.onnx").path
    recorded = {prop.key: prop.value for prop in onnx.load(onnx_path).metadata_props}
    assert recorded[INDEX_ID_KEY] == index_id(verified_manifest(artifacts))
    users = np.array([0, 1], dtype=np.int64)
    (scores,) = scoring_session(onnx_path, artifacts).run(["score"], {"user_idx": users, "item_idx": users})
    assert scores.shape == (2,)  # fresh: accepted

    write_known_index(artifacts)  # a retrain replaces the index; the export stays behind
    with pytest.raises(ArtifactError, match=r"model_scoring.onnx was built from another index .*rerun "):
        scoring_session(onnx_path, artifacts)
    shutil.copyfile(onnx_path, tmp_path / "elsewhere.onnx")  # not beside an index: no claim to check
    scoring_session(tmp_path / "elsewhere.onnx", tmp_path)
