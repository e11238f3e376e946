import os

from two_tower_recsys.utils import fileio
from two_tower_recsys.utils.fileio import replace_directory


def make_dir(path, **files):
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def test_replace_directory_moves_into_place_when_nothing_is_there(tmp_path):
    new = make_dir(tmp_path / ".staging", a="new")
    replace_directory(new, tmp_path / "model")
    assert (tmp_path / "model/a").read_text() == "new" and not new.exists()


def test_replace_directory_swaps_in_one_step_and_deletes_the_old_one(tmp_path):
    old = make_dir(tmp_path / "model", a="old", only_old="x")
    inode = os.stat(old).st_ino
    new = make_dir(tmp_path / ".staging", a="new")
    replace_directory(new, tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (tmp_path / "model/a").read_text() == "new" and not (tmp_path / "model/only_old").exists()
    assert os.stat(tmp_path / "model").st_ino != inode


def test_replace_directory_without_an_atomic_exchange_falls_back_to_renames(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio, "_exchange_paths", lambda first, second: False)  # e.g. macOS
    make_dir(tmp_path / "model", a="old")
    replace_directory(make_dir(tmp_path / ".staging", a="new"), tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (tmp_path / "model/a").read_text() == "new"
