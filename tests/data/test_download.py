"""ensure_raw_zip: existing files are verified offline; missing ones are downloaded through DVC.

grouplens is replaced by a loopback HTTP server that serves a generated zip the way Apache
serves grouplens (with an ETag, which DVC needs to fetch an import); DVC itself is real.
"""

from __future__ import annotations

import hashlib
import http.server
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import yaml

from two_tower_recsys.data.download import RawZip, ensure_raw_zip
from two_tower_recsys.errors import ChecksumError, DataError
from two_tower_recsys.pipelines.hydra_edge import compose_settings
from two_tower_recsys.settings import DataConfig, SyntheticSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
RATINGS = [(1, 10, 4.0, 100), (1, 20, 3.5, 200), (2, 10, 5.0, 300), (3, 30, 1.0, 400)]
ZIP_NAME = "ml-test.zip"


# --- a stand-in for files.grouplens.org ------------------------------------------------------


class _GrouplensServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), partial(_GrouplensHandler, directory=str(directory)))
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.send_etags = True
        self.truncate_bodies = False

    def url(self, name: str) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/{name}"

    def downloads(self, name: str) -> int:
        return sum(1 for method, path, _ in self.requests if method == "GET" and path == f"/{name}")

    def handle_error(self, request, client_address) -> None:
        # DVC probes a URL with a GET it closes after the headers: not an error worth a traceback.
        pass


class _GrouplensHandler(http.server.SimpleHTTPRequestHandler):
    server: _GrouplensServer

    def end_headers(self) -> None:
        path = Path(self.translate_path(self.path))
        if path.is_file() and self.server.send_etags:
            stat = path.stat()  # Apache's default ETag is made of the size and mtime, too
            self.send_header("ETag", f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"')
        super().end_headers()

    def copyfile(self, source, outputfile) -> None:
        if self.server.truncate_bodies:
            # The connection drops half-way: Content-Length promised the whole file.
            body = source.read()
            outputfile.write(body[: len(body) // 2])
            return
        super().copyfile(source, outputfile)

    def log_request(self, code="-", size="-") -> None:
        self.server.requests.append((self.command, self.path, int(code)))

    def log_message(self, format, *args) -> None:  # the requests list is the log
        pass


@pytest.fixture
def hermetic_dvc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep DVC's machine-wide state and config, and any proxy, out of the tests."""
    for variable in ("DVC_SITE_CACHE_DIR", "DVC_GLOBAL_CONFIG_DIR", "DVC_SYSTEM_CONFIG_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "dvc-machine" / variable.lower()))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(variable, "127.0.0.1,localhost")


@pytest.fixture
def published(tmp_path: Path, movielens_zip) -> Path:
    """The directory the server publishes: a MovieLens-format zip and its BSD-style .md5."""
    zip_path = movielens_zip(RATINGS, name=f"grouplens/{ZIP_NAME}")
    _publish_md5(zip_path, _md5(zip_path))
    return zip_path.parent


@pytest.fixture
def grouplens(published: Path, hermetic_dvc: None) -> Iterator[_GrouplensServer]:
    server = _GrouplensServer(published)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --- helpers ---------------------------------------------------------------------------------


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _publish_md5(zip_path: Path, md5: str) -> None:
    # grouplens's .md5 files are written by BSD md5(1).
    zip_path.with_name(zip_path.name + ".md5").write_text(f"MD5 ({zip_path.name}) = {md5}\n")


def _config(server: _GrouplensServer, published: Path, **overrides) -> DataConfig:
    data = DataConfig(name="ml-test", url=server.url(ZIP_NAME), md5=_md5(published / ZIP_NAME), md5_url=None)
    return replace(data, **overrides)


def _raw_zip(tmp_path: Path) -> Path:
    return tmp_path / "project" / "data" / "raw" / ZIP_NAME


def _ensure(data: DataConfig, raw_zip: Path) -> RawZip:
    return ensure_raw_zip(data, raw_zip, progress=False)


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _one_line(exc: pytest.ExceptionInfo[Exception]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- downloads through DVC -------------------------------------------------------------------


@pytest.mark.slow
def test_download_is_verified_and_byte_identical(tmp_path, grouplens, published, capfd):
    import dvc.repo  # noqa: F401 (importing dvc sets its log level: read the level after)

    raw_zip = _raw_zip(tmp_path)
    dvc_level = logging.getLogger("dvc").level

    result = _ensure(_config(grouplens, published), raw_zip)

    assert result == RawZip(raw_zip, _md5(published / ZIP_NAME), "downloaded")
    assert raw_zip.read_bytes() == (published / ZIP_NAME).read_bytes()
    assert grouplens.downloads(ZIP_NAME) >= 1
    import_file = yaml.safe_load(_sibling(raw_zip, ".dvc").read_text())
    assert import_file["deps"][0]["path"] == grouplens.url(ZIP_NAME)
    # The project was created beside the zip, and DVC kept no second copy of the zip.
    dvc_dir = raw_zip.parent / ".dvc"
    assert dvc_dir.is_dir()
    zip_bytes = raw_zip.read_bytes()
    assert [p for p in dvc_dir.rglob("*") if p.is_file() and p.read_bytes() == zip_bytes] == []
    # DVC's step-by-step INFO lines stay quiet, and its log level is left as it was.
    assert "Importing" not in capfd.readouterr().out
    assert logging.getLogger("dvc").level == dvc_level


@pytest.mark.slow
def test_existing_zip_is_not_downloaded_again_and_a_deleted_one_is(tmp_path, grouplens, published):
    raw_zip = _raw_zip(tmp_path)
    data = _config(grouplens, published)
    _ensure(data, raw_zip)
    requests_after_download = len(grouplens.requests)

    assert _ensure(data, raw_zip).source == "existing"
    assert len(grouplens.requests) == requests_after_download  # no network at all

    raw_zip.unlink()
    again = _ensure(data, raw_zip)  # through the .dvc file written the first time
    assert again.source == "downloaded" and again.md5 == data.md5


@pytest.mark.slow
def test_project_above_the_zip_holds_the_import_file(tmp_path, grouplens, published, caplog):
    from dvc.repo import Repo

    project = tmp_path / "project"
    project.mkdir()
    caplog.set_level(logging.WARNING, logger="dvc")
    Repo.init(str(project), no_scm=True)
    raw_zip = _raw_zip(tmp_path)

    _ensure(_config(grouplens, published), raw_zip)

    assert _sibling(raw_zip, ".dvc").is_file()
    assert not (raw_zip.parent / ".dvc").exists()


@pytest.mark.slow
def test_committed_style_import_file_is_completed_on_first_download(tmp_path, grouplens, published):
    # data/raw/*.dvc were written offline: no ETag is recorded, so a bare `dvc pull` fetches
    # nothing; the download records the server's ETag and proceeds.
    raw_zip = _raw_zip(tmp_path)
    raw_zip.parent.mkdir(parents=True)
    committed = (REPO_ROOT / "data/raw/ml-latest-small.zip.dvc").read_text()
    url = grouplens.url(ZIP_NAME)
    _sibling(raw_zip, ".dvc").write_text(
        committed.replace("https://files.grouplens.org/datasets/movielens/ml-latest-small.zip", url).replace(
            "path: ml-latest-small.zip", f"path: {ZIP_NAME}"
        )
    )

    result = _ensure(_config(grouplens, published), raw_zip)

    assert result.source == "downloaded"
    assert "checksum" in yaml.safe_load(_sibling(raw_zip, ".dvc").read_text())["deps"][0]


@pytest.mark.slow
def test_server_without_etags_is_downloaded_all_the_same(tmp_path, grouplens, published):
    raw_zip = _raw_zip(tmp_path)
    data = _config(grouplens, published)
    grouplens.send_etags = False

    assert _ensure(data, raw_zip).md5 == data.md5
    raw_zip.unlink()
    assert _ensure(data, raw_zip).md5 == data.md5  # and again, from the updated .dvc file


@pytest.mark.slow
def test_new_release_on_the_server_fails_verification(tmp_path, grouplens, published):
    raw_zip = _raw_zip(tmp_path)
    old = _config(grouplens, published)
    _ensure(old, raw_zip)
    raw_zip.unlink()
    (published / ZIP_NAME).write_bytes(b"a re-released file")  # its ETag changes too

    with pytest.raises(ChecksumError) as exc:
        _ensure(old, raw_zip)

    new_md5 = _md5(published / ZIP_NAME)
    assert f"data.md5={new_md5}" in _one_line(exc)
    assert _ensure(replace(old, md5=new_md5), raw_zip).md5 == new_md5


@pytest.mark.slow
def test_md5_mismatch_is_one_line_and_the_download_is_moved_aside(tmp_path, grouplens, published):
    raw_zip = _raw_zip(tmp_path)

    with pytest.raises(ChecksumError) as exc:
        _ensure(_config(grouplens, published, md5="0" * 32), raw_zip)

    actual = _md5(published / ZIP_NAME)
    message = _one_line(exc)
    assert actual in message and f"data.md5={actual}" in message and "0" * 32 in message
    assert not raw_zip.exists()
    assert _sibling(raw_zip, ".corrupt").read_bytes() == (published / ZIP_NAME).read_bytes()


@pytest.mark.slow
def test_http_404_is_one_line_naming_the_url(tmp_path, grouplens, published):
    raw_zip = _raw_zip(tmp_path)
    data = _config(grouplens, published, url=grouplens.url("ml-gone.zip"))

    with pytest.raises(DataError) as exc:
        _ensure(data, raw_zip)

    message = _one_line(exc)
    assert grouplens.url("ml-gone.zip") in message and "404" in message
    assert not raw_zip.exists()


@pytest.mark.slow
def test_unreachable_server_is_one_line(tmp_path, grouplens, published):
    data = _config(grouplens, published)
    grouplens.shutdown()
    grouplens.server_close()

    with pytest.raises(DataError) as exc:
        _ensure(data, _raw_zip(tmp_path))

    assert data.url in _one_line(exc)


@pytest.mark.slow
@pytest.mark.parametrize("send_etags", [True, False])
def test_truncated_transfer_is_never_used(tmp_path, grouplens, published, send_etags):
    raw_zip = _raw_zip(tmp_path)
    grouplens.truncate_bodies = True
    grouplens.send_etags = send_etags

    with pytest.raises(DataError) as exc:
        _ensure(_config(grouplens, published), raw_zip)

    message = _one_line(exc)
    assert grouplens.url(ZIP_NAME) in message and "cut short" in message
    assert not raw_zip.exists()


@pytest.mark.slow
def test_published_md5_is_used_when_no_md5_is_configured(tmp_path, grouplens, published):
    raw_zip = _raw_zip(tmp_path)
    data = _config(grouplens, published, md5=None, md5_url=grouplens.url(f"{ZIP_NAME}.md5"))

    result = _ensure(data, raw_zip)

    assert result.md5 == _md5(published / ZIP_NAME)
    assert result.md5 in _sibling(raw_zip, ".md5").read_text()  # no need to ask again


@pytest.mark.slow
def test_wrong_published_md5_is_a_mismatch(tmp_path, grouplens, published):
    _publish_md5(published / ZIP_NAME, "f" * 32)
    data = _config(grouplens, published, md5=None, md5_url=grouplens.url(f"{ZIP_NAME}.md5"))

    with pytest.raises(ChecksumError, match="f" * 32):
        _ensure(data, _raw_zip(tmp_path))


@pytest.mark.slow
def test_first_download_records_its_md5_when_none_is_known(tmp_path, grouplens, published):
    raw_zip = _raw_zip(tmp_path)
    data = _config(grouplens, published, md5=None, md5_url=None)

    first = _ensure(data, raw_zip)

    assert _sibling(raw_zip, ".md5").read_text() == f"{first.md5}  {ZIP_NAME}\n"
    with raw_zip.open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ChecksumError, match=f"expected {first.md5}"):
        _ensure(data, raw_zip)


# --- files already on disk: no network -------------------------------------------------------


def test_existing_file_with_wrong_md5_is_refused_and_kept(movielens_zip):
    path = movielens_zip(RATINGS)
    data = DataConfig(name="ml-test", url="http://127.0.0.1:9/unused.zip", md5="0" * 32)

    with pytest.raises(ChecksumError) as exc:
        ensure_raw_zip(data, path)

    assert f"data.md5={_md5(path)}" in _one_line(exc)
    assert path.exists()


def test_existing_file_with_the_configured_md5_is_used(movielens_zip):
    path = movielens_zip(RATINGS)
    data = DataConfig(name="ml-test", url="http://127.0.0.1:9/unused.zip", md5=_md5(path))

    assert ensure_raw_zip(data, path) == RawZip(path, _md5(path), "existing")


def test_size_mismatch_is_reported_before_the_md5(movielens_zip):
    path = movielens_zip(RATINGS)
    size = path.stat().st_size
    data = DataConfig(name="ml-test", md5=_md5(path), size_bytes=size + 1)

    with pytest.raises(ChecksumError) as exc:
        ensure_raw_zip(data, path)

    message = _one_line(exc)
    assert f"{size} bytes != expected {size + 1}" in message
    assert f"data.size_bytes={size}" in message


def test_sidecar_md5_verifies_an_existing_file(movielens_zip):
    path = movielens_zip(RATINGS)
    _sibling(path, ".md5").write_text(f"{'a' * 32}  {path.name}\n")

    with pytest.raises(ChecksumError, match="expected a{32}"):
        ensure_raw_zip(DataConfig(name="ml-test"), path)


def test_real_small_dataset_passed_as_raw_zip_is_verified_not_downloaded(small_movielens_zip):
    settings = compose_settings(["data=ml-latest-small", f"paths.raw_zip={small_movielens_zip}"])

    result = ensure_raw_zip(settings.data, settings.paths.raw_zip)

    assert result == RawZip(small_movielens_zip, settings.data.md5, "existing")


def test_custom_zip_needs_no_checksum(movielens_zip):
    path = movielens_zip(RATINGS)

    assert ensure_raw_zip(DataConfig(name="custom"), path) == RawZip(path, _md5(path), "existing")


def test_custom_without_a_zip_says_how_to_pass_one(tmp_path):
    with pytest.raises(DataError, match=r"paths\.raw_zip="):
        ensure_raw_zip(DataConfig(name="custom"), tmp_path / "missing.zip")


def test_synthetic_zip_is_generated_once_per_spec(tmp_path):
    spec = SyntheticSpec(users=60, movies=50, ratings=600, seed=0, clusters=4)
    data = DataConfig(name="synthetic", synthetic=spec)
    path = tmp_path / "synthetic.zip"

    first = ensure_raw_zip(data, path, progress=False)
    again = ensure_raw_zip(data, path, progress=False)
    reseeded = ensure_raw_zip(replace(data, synthetic=replace(spec, seed=1)), path, progress=False)

    assert (first.source, again.source, reseeded.source) == ("generated", "existing", "generated")
    assert first.md5 == again.md5 != reseeded.md5 == _md5(path)


# --- the committed DVC import files ----------------------------------------------------------


def _named_datasets() -> list[tuple[str, str]]:
    datasets = []
    for config in sorted((REPO_ROOT / "configs" / "data").glob("*.yaml")):
        url = (yaml.safe_load(config.read_text()) or {}).get("url")
        if url:
            datasets.append((config.stem, url))
    return datasets


def test_every_downloadable_dataset_has_a_committed_import_file():
    datasets = _named_datasets()
    assert {name for name, _ in datasets} >= {"ml-20m", "ml-25m", "ml-32m", "ml-latest-small"}
    for name, url in datasets:
        import_file = REPO_ROOT / "data" / "raw" / f"{name}.zip.dvc"
        stage = yaml.safe_load(import_file.read_text())
        assert stage["deps"][0]["path"] == url, import_file
        assert stage["outs"] == [{"hash": "md5", "path": f"{name}.zip"}], import_file


def test_dvc_cli_never_phones_home_from_this_project():
    config = (REPO_ROOT / ".dvc" / "config").read_text()
    assert "analytics = false" in config and "check_update = false" in config
