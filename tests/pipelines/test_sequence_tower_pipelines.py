"""A sequence user tower through the real pipelines: train, evaluate, infer, export, package."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from inference_support import write_known_index
from support import TINY_SEQUENCE, TINY_SYNTHETIC, run_cli, scratch_paths

from two_tower_recsys.artifacts.store import load_index
from two_tower_recsys.inference.recommender import Recommender
from two_tower_recsys.pipelines import evaluate_pipeline, train_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings
from two_tower_recsys.pipelines.trained_scorers import load_checkpoint_module
from two_tower_recsys.preprocessing.histories import SERVING, histories_for
from two_tower_recsys.preprocessing.prepare import prepare_dataset

pytestmark = pytest.mark.slow

SEQUENCE = [
    *TINY_SEQUENCE,
    "logging.enabled=false",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequence")
    overrides = [
        *TINY_SYNTHETIC,
        *SEQUENCE,
        *scratch_paths(root),
    ]
    train_pipeline.run(compose_settings(overrides))
    return root, overrides


def test_published_user_vectors_read_every_known_positive(trained):
    root, overrides = trained
    settings = compose_settings(overrides)
    dataset = prepare_dataset(settings.data, settings.paths, progress=False)
    index = load_index(root / "artifacts")
    module = load_checkpoint_module(root / "artifacts")
    assert module.reads_histories and index.manifest["config"]["model"]["user_tower"] == "sequence"
    serving = histories_for(dataset, SERVING, 20)
    expected = module.net.user_tower.embed_histories(serving.items, serving.lengths)
    assert torch.allclose(index.user_embeddings, expected, atol=1e-5)


def test_evaluate_rescoring_from_the_checkpoint_matches_the_training_report(trained):
    root, overrides = trained
    report_path = root / "artifacts/metrics.json"
    trained_report = json.loads(report_path.read_text())
    report_path.unlink()
    evaluate_pipeline.run(compose_settings(overrides))
    report = json.loads(report_path.read_text())
    for split in ("val", "test"):
        for name, value in trained_report[split]["two_tower"].items():
            assert report[split]["two_tower"][name] == pytest.approx(value, abs=1e-6)


def test_infer_answers_a_known_user(trained, tmp_path):
    root, _ = trained
    artifacts = root / "artifacts"
    user_id = int(load_index(artifacts).user_ids[0])
    result = run_cli(
        ["infer", f"infer.user_id={user_id}", "infer.k=5", f"paths.artifacts_dir={artifacts}"], tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout)
    assert answer["fallback"] is False and len(answer["recommendations"]) == 5


def test_export_onnx_writes_the_user_tower_and_onnxruntime_matches_torch(trained, tmp_path):
    root, _ = trained
    artifacts = root / "artifacts"
    result = run_cli(["export-onnx", f"paths.artifacts_dir={artifacts}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(history [N, L <= 20], lengths [N]) -> user vector [N, 64]" in result.stdout
    session = ort.InferenceSession(str(artifacts / "user_tower.onnx"), providers=["CPUExecutionProvider"])
    tower = load_checkpoint_module(artifacts).net.user_tower.eval()
    rng = np.random.default_rng(1)
    history = rng.integers(0, tower.item_embedding.num_embeddings, (100, 13), dtype=np.int64)
    lengths = rng.integers(1, 14, 100, dtype=np.int64)
    (vectors,) = session.run(["user_vector"], {"history": history, "lengths": lengths})
    with torch.no_grad():
        expected = tower(torch.from_numpy(history), torch.from_numpy(lengths)).numpy()
    assert np.abs(vectors - expected).max() <= 1e-5
    assert not (artifacts / "model_scoring.onnx").exists()


def test_lazy_adam_with_a_sequence_tower_is_a_one_line_config_error(tmp_path):
    result = run_cli(["train", *TINY_SYNTHETIC, "model.user_tower=sequence"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: model.user_tower=sequence needs trainer.optimizer=adam or adamw (lazy_adam updates "
        "embedding rows only; the transformer's weights are dense)"
    )


def test_a_known_users_own_history_sent_fresh_answers_as_the_published_vector(trained):
    """The published vectors and the request path read histories with the same tower: sending a
    user's latest positives (oldest first) must give the answer their stored vector gives."""
    root, overrides = trained
    settings = compose_settings(overrides)
    dataset = prepare_dataset(settings.data, settings.paths, progress=False)
    core = Recommender.from_artifacts(root / "artifacts")
    serving = histories_for(dataset, SERVING, 20)
    users = [0, 1, int(serving.lengths.argmax())]
    user_ids = [int(dataset.user_ids[user]) for user in users]
    histories = [
        dataset.item_ids[serving.items[user, : serving.lengths[user]].numpy()].tolist() for user in users
    ]
    fresh = core.recommend(user_ids, 10, histories=histories)
    stored = core.recommend(user_ids, 10)
    for got, expected in zip(fresh, stored, strict=True):
        assert got.unknown_history_items == 0 and not got.fallback
        assert [movie for movie, _, _ in got.recommendations] == [m for m, _, _ in expected.recommendations]
        assert [score for _, score, _ in got.recommendations] == pytest.approx(
            [score for _, score, _ in expected.recommendations], abs=1e-4
        )


def test_infer_reads_a_fresh_history_from_the_command_line(trained, tmp_path):
    root, _ = trained
    artifacts = root / "artifacts"
    movies = load_index(artifacts).item_ids[:3].tolist()
    history = f"infer.history=[{movies[0]},{movies[1]},{movies[2]},987654321]"
    result = run_cli(
        ["infer", "infer.user_id=-5", "infer.k=7", history, f"paths.artifacts_dir={artifacts}"], tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout)
    assert answer["fallback"] is False and answer["unknown_history_items"] == 1
    assert len(answer["recommendations"]) == 7
    assert not {row[0] for row in answer["recommendations"]} & set(movies)


def test_infer_with_a_history_on_an_id_tower_is_a_one_line_error(tmp_path):
    artifacts = write_known_index(tmp_path / "artifacts")
    result = run_cli(
        ["infer", "infer.user_id=7", "infer.history=[10,20]", f"paths.artifacts_dir={artifacts}"], tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: history: this model's user tower is an ID embedding")
    assert "Traceback" not in result.stderr
