import json

import numpy as np
import pytest
import torch
from inference_support import RATED_NOT_POSITIVE, SEEN, write_known_index, write_sequence_index

from two_tower_recsys.artifacts.store import (
    HISTORY_TOWER_KIND,
    INDEX_FILES,
    copy_index,
    index_id,
    load_index,
    refuse_if_stale,
    verified_manifest,
)
from two_tower_recsys.errors import ArtifactError
from two_tower_recsys.models.components.sequence_tower import SequenceTower
from two_tower_recsys.utils.fileio import MANIFEST_NAME, write_manifest


def test_copy_index_has_its_own_manifest_and_no_checkpoint(tmp_path):
    source = write_known_index(tmp_path / "artifacts")
    (source / "model.ckpt").write_bytes(b"not listed, not copied")
    manifest = copy_index(source, tmp_path / "copy")
    assert sorted(manifest["files"]) == sorted(INDEX_FILES)
    assert manifest["dataset"] == {"name": "known-answers"}  # provenance travels with the copy
    original, copy = load_index(source), load_index(tmp_path / "copy")
    assert copy.titles == original.titles and (copy.user_embeddings == original.user_embeddings).all()
    assert not (tmp_path / "copy/model.ckpt").exists()


def test_copy_index_refuses_altered_sources(tmp_path):
    source = write_known_index(tmp_path / "artifacts")
    (source / "popularity.npy").write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="popularity.npy"):
        copy_index(source, tmp_path / "copy")


def test_index_id_follows_the_index_and_survives_a_copy(tmp_path):
    source = write_known_index(tmp_path / "artifacts")
    manifest = verified_manifest(source)
    assert manifest["index_id"] == index_id(manifest)  # recorded for readers outside the package
    assert index_id(copy_index(source, tmp_path / "copy")) == manifest["index_id"]
    assert index_id(verified_manifest(write_known_index(tmp_path / "again"))) == manifest["index_id"]
    assert (
        index_id(verified_manifest(write_known_index(tmp_path / "hotter", temperature=2.0)))
        != (manifest["index_id"])
    )
    (source / "manifest.json").unlink()
    np.save(source / "popularity.npy", np.zeros(6, dtype=np.int64))
    write_manifest(source, {key: value for key, value in manifest.items() if key != "files"})
    assert index_id(verified_manifest(source)) != manifest["index_id"]


def test_derived_files_from_another_index_are_refused_with_the_command_to_rerun(tmp_path):
    artifacts = write_known_index(tmp_path / "artifacts")
    built_from = index_id(verified_manifest(artifacts))
    refuse_if_stale(artifacts / "model_scoring.onnx", built_from, artifacts, "two-tower export-onnx")
    with pytest.raises(ArtifactError, match=r"rerun `two-tower export-onnx`$") as error:
        refuse_if_stale(
            artifacts / "model_scoring.onnx", "0123456789abcdef", artifacts, "two-tower export-onnx"
        )
    assert "\n" not in str(error.value) and "0123456789abcdef" in str(error.value)
    with pytest.raises(ArtifactError, match="unrecorded"):
        refuse_if_stale(artifacts / "mlflow_model", None, artifacts, "two-tower package-mlflow")


def test_a_directory_without_an_index_makes_no_claim(tmp_path):
    refuse_if_stale(tmp_path / "model", "0123456789abcdef", tmp_path, "two-tower package-mlflow")
    (tmp_path / "manifest.json").write_text('{"files": {"train.parquet": {}}}')  # processed data
    refuse_if_stale(tmp_path / "model", "0123456789abcdef", tmp_path, "two-tower package-mlflow")


def test_rated_items_hold_every_rating_and_the_positives(tmp_path):
    index = load_index(write_known_index(tmp_path / "artifacts"))
    for user, positives in SEEN.items():
        assert index.seen.items_of(user).tolist() == sorted(positives)
        assert index.rated.items_of(user).tolist() == sorted({*positives, *RATED_NOT_POSITIVE.get(user, [])})
    assert index.excluded("positives") is index.seen and index.excluded("none") is None


def rewrite_manifest(directory, change) -> None:
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    change(manifest)
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_the_index_records_its_history_towers_kind_and_reads_indexes_written_before_it(tmp_path):
    directory = write_sequence_index(tmp_path / "artifacts")
    assert verified_manifest(directory)[HISTORY_TOWER_KIND] == "sequence"
    recorded = load_index(directory)
    rewrite_manifest(directory, lambda manifest: manifest.pop(HISTORY_TOWER_KIND))  # as written before
    index = load_index(directory)
    assert isinstance(index.history_tower, SequenceTower) and index.reads_histories
    history, lengths = torch.tensor([[3, 8, 1]]), torch.tensor([3])
    assert torch.allclose(
        index.history_tower.embed_histories(history, lengths),
        recorded.history_tower.embed_histories(history, lengths),
        atol=1e-6,
    )
    assert not load_index(write_known_index(tmp_path / "id")).reads_histories


@pytest.mark.parametrize("kind", ["lstm", "id"])
def test_a_history_tower_of_a_kind_that_reads_no_histories_is_a_one_line_error(tmp_path, kind):
    directory = write_sequence_index(tmp_path / "artifacts")
    rewrite_manifest(directory, lambda manifest: manifest.update({HISTORY_TOWER_KIND: kind}))
    with pytest.raises(ArtifactError, match=f"does not load as a {kind} user tower") as raised:
        load_index(directory)
    assert "\n" not in str(raised.value)
