import pytest
from inference_support import RATED_NOT_POSITIVE, SEEN, write_known_index

from two_tower_recsys.artifacts.store import INDEX_FILES, copy_index, load_index
from two_tower_recsys.errors import ArtifactError


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


def test_rated_items_hold_every_rating_and_the_positives(tmp_path):
    index = load_index(write_known_index(tmp_path / "artifacts"))
    for user, positives in SEEN.items():
        assert index.seen.items_of(user).tolist() == sorted(positives)
        assert index.rated.items_of(user).tolist() == sorted({*positives, *RATED_NOT_POSITIVE.get(user, [])})
    assert index.excluded("positives") is index.seen and index.excluded("none") is None
