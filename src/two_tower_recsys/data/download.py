"""Make sure a dataset's raw zip is on disk and is the file it should be.

Three sources, one result (:class:`RawZip`):

- generated: synthetic datasets are written locally, and rewritten when their spec changes;
- existing: a zip already at ``raw_zip`` (a default path or ``paths.raw_zip=...``) is verified
  and used, without any network access;
- downloaded: a missing zip with a URL is fetched by DVC, then verified.

Downloads go through DVC so that the source of every raw file is recorded in a ``.dvc`` file
next to it (``data/raw/<name>.zip.dvc``, committed). Those files are DVC *partial imports*
(``dvc import-url --no-download``): ``dvc pull`` fetches a partial import from its URL, which
a plain import-url output is not (with no DVC remote, pull looks for it in the empty cache).

Verification: the expected md5 is ``data.md5``, else the ``<zip>.md5`` sidecar recorded by an
earlier verified download, else the one grouplens publishes at ``data.md5_url``; with none of
them the first download's md5 is recorded (trust on first use). A file that fails is reported
in one line that says how to accept it, and a fresh download that fails is moved aside so that
it is never used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import requests
import yaml

from two_tower_recsys.errors import ChecksumError, DataError
from two_tower_recsys.settings import DataConfig, SyntheticSpec
from two_tower_recsys.utils.fileio import atomic_write_text, md5_file

if TYPE_CHECKING:
    from dvc.repo import Repo

log = logging.getLogger(__name__)

Source = Literal["existing", "downloaded", "generated"]

# (connect, read) seconds for our own small requests (a published .md5, a failure diagnosis):
# an unreachable server must not stall a run.
HTTP_TIMEOUT_S = (3.05, 10)
_MD5_PATTERN = re.compile(r"\b[0-9a-fA-F]{32}\b")


@dataclass(frozen=True)
class RawZip:
    path: Path
    md5: str  # md5 of the verified zip
    source: Source


def ensure_raw_zip(data: DataConfig, raw_zip: Path, *, progress: bool = True) -> RawZip:
    """Return the verified raw zip of ``data`` at ``raw_zip``, generating or downloading it if absent.

    Raises :class:`ChecksumError` when the file is not the expected one and :class:`DataError`
    when it cannot be found or downloaded; both carry a single line.
    """
    raw_zip = Path(raw_zip)
    if data.synthetic is not None:
        return _ensure_synthetic(data.name, data.synthetic, raw_zip, progress)
    if raw_zip.exists():
        return RawZip(raw_zip, _verify_existing(data, raw_zip), "existing")
    if data.url is None:
        raise DataError(
            f"{raw_zip} does not exist and data={data.name} has no download URL: "
            "pass paths.raw_zip=<path to a MovieLens-format zip>"
        )
    return RawZip(raw_zip, _download_and_verify(data, data.url, raw_zip, progress), "downloaded")


# --- synthetic -------------------------------------------------------------------------------


def _ensure_synthetic(name: str, spec: SyntheticSpec, raw_zip: Path, progress: bool) -> RawZip:
    # Imported here: the generator pulls in numpy machinery that downloads never need.
    from two_tower_recsys.data.synthetic import read_synthetic_spec, write_synthetic_zip

    if raw_zip.exists() and read_synthetic_spec(raw_zip) == spec:
        return RawZip(raw_zip, md5_file(raw_zip), "existing")
    reason = "is missing" if not raw_zip.exists() else "was generated from another spec"
    log.info("%s %s: generating synthetic data %s", raw_zip, reason, spec)
    write_synthetic_zip(raw_zip, spec, name=name, progress=progress)
    return RawZip(raw_zip, md5_file(raw_zip), "generated")


# --- verification ----------------------------------------------------------------------------


def _verify_existing(data: DataConfig, raw_zip: Path) -> str:
    if not raw_zip.is_file():
        raise DataError(f"{raw_zip} is not a file")
    actual_md5, actual_size = md5_file(raw_zip), raw_zip.stat().st_size
    expected = data.md5 or _read_sidecar(raw_zip)
    problem = _mismatch(actual_md5, actual_size, expected, data.size_bytes)
    if problem is not None:
        # Never deleted: it may be the user's own file (paths.raw_zip=...), not our download.
        retry = "Delete it to download again, or accept" if data.url else "Replace it, or accept"
        raise ChecksumError(
            f"{raw_zip}: {problem} (partial or corrupt file?). "
            f"{retry} this file with {_accept_overrides(actual_md5, actual_size, data)}"
        )
    if expected is None:
        log.info("%s has no expected checksum; its md5 is %s", raw_zip, actual_md5)
    return actual_md5


def _download_and_verify(data: DataConfig, url: str, raw_zip: Path, progress: bool) -> str:
    _pull_with_dvc(url, raw_zip, progress=progress)
    actual_md5, actual_size = md5_file(raw_zip), raw_zip.stat().st_size
    expected = data.md5 or _read_sidecar(raw_zip) or _fetch_published_md5(data.md5_url)
    problem = _mismatch(actual_md5, actual_size, expected, data.size_bytes)
    if problem is not None:
        corrupt = _sibling(raw_zip, ".corrupt")
        os.replace(raw_zip, corrupt)
        raise ChecksumError(
            f"{url} -> {raw_zip}: {problem} (partial or corrupt download, or a new release?); "
            f"moved it aside to {corrupt}. Run again to retry, or accept this file with "
            f"{_accept_overrides(actual_md5, actual_size, data)}"
        )
    if expected is None:
        log.warning(
            "no published checksum for %s: recorded md5 %s in %s (trust on first use)",
            url,
            actual_md5,
            _sibling(raw_zip, ".md5"),
        )
    if data.md5 is None:
        _write_sidecar(raw_zip, actual_md5)
    return actual_md5


def _mismatch(
    actual_md5: str, actual_size: int, expected_md5: str | None, expected_size: int | None
) -> str | None:
    """What differs from the expectation, in a few words; None when the file is the right one."""
    if expected_size is not None and actual_size != expected_size:
        return f"{actual_size} bytes != expected {expected_size}"
    if expected_md5 is not None and actual_md5 != expected_md5.lower():
        return f"md5 {actual_md5} != expected {expected_md5}"
    return None


def _accept_overrides(actual_md5: str, actual_size: int, data: DataConfig) -> str:
    overrides = f"data.md5={actual_md5}"
    if data.size_bytes is not None and data.size_bytes != actual_size:
        overrides += f" data.size_bytes={actual_size}"
    return overrides


def _sibling(raw_zip: Path, suffix: str) -> Path:
    return raw_zip.with_name(raw_zip.name + suffix)


def _read_sidecar(raw_zip: Path) -> str | None:
    sidecar = _sibling(raw_zip, ".md5")
    if not sidecar.is_file():
        return None
    return _parse_md5(sidecar.read_text(encoding="utf-8", errors="replace"))


def _write_sidecar(raw_zip: Path, md5: str) -> None:
    # md5sum's format, so `md5sum -c ml-20m.zip.md5` works in data/raw/.
    atomic_write_text(_sibling(raw_zip, ".md5"), f"{md5}  {raw_zip.name}\n")


def _parse_md5(text: str) -> str | None:
    """The checksum in an md5 file, whether md5sum's ``<md5>  <name>`` or BSD's ``MD5 (<name>) = <md5>``."""
    match = _MD5_PATTERN.search(text)
    return match.group(0).lower() if match else None


def _fetch_published_md5(md5_url: str | None) -> str | None:
    if md5_url is None:
        return None
    try:
        response = requests.get(md5_url, timeout=HTTP_TIMEOUT_S)
        response.raise_for_status()
    except requests.RequestException as exc:
        log.warning("could not read the published checksum at %s (%s)", md5_url, _short(exc))
        return None
    md5 = _parse_md5(response.text)
    if md5 is None:
        log.warning("%s holds no md5 checksum", md5_url)
    return md5


# --- DVC -------------------------------------------------------------------------------------


def _pull_with_dvc(url: str, raw_zip: Path, *, progress: bool = True) -> None:
    """Download ``url`` to ``raw_zip`` through its DVC import file, ``<raw_zip>.dvc``.

    The import file is used when it names ``url``, and (re)written otherwise. Raises
    :class:`DataError` with one line when DVC cannot download the file.
    """
    # DVC wraps most failures in DvcException, but a transfer that breaks off while DVC
    # downloads a file outright surfaces as aiohttp's (or the OS's) own error.
    from aiohttp import ClientError
    from dvc.exceptions import DvcException

    target = raw_zip.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    dvc_file = _sibling(target, ".dvc")
    with _dvc_output(progress):
        try:
            with _throwaway_cache_repo(_dvc_project_root(target.parent)) as repo:
                if not _imports_url(dvc_file, url, target.name):
                    log.info("writing %s (import of %s)", dvc_file, url)
                    repo.imp_url(url, out=str(target), no_download=True, force=True)
                _pull_partial_import(repo, dvc_file)
        except (DvcException, ClientError, OSError) as exc:
            log.debug("DVC failed to download %s", url, exc_info=True)
            # The zip was absent before: whatever a failed transfer left there is not it.
            target.unlink(missing_ok=True)
            raise DataError(f"cannot download {url}: {_why_download_failed(url, exc)}") from None
    log.info("downloaded %s to %s", url, raw_zip)


def _pull_partial_import(repo: Repo, dvc_file: Path) -> None:
    targets = [str(dvc_file)]
    if _pulled(repo, targets):
        return
    # DVC fetches a partial import only while the server's ETag equals the one recorded in the
    # .dvc file; otherwise pull fetches nothing and fails at checkout. That happens when the
    # file was written offline (our committed ones have no ETag) or the server re-released the
    # file. `dvc update --no-download` records the current ETag (commit the change).
    log.info("%s records no ETag or an older one: updating it from the server", dvc_file)
    repo.update(targets=targets, no_download=True)
    if _pulled(repo, targets):
        return
    # A server that sends neither ETag nor Content-MD5 gives DVC nothing to match: import the
    # file outright instead (the .dvc file then records the download's md5 as well).
    log.info("%s sends no ETag: importing it without DVC's change detection", dvc_file)
    repo.update(targets=targets)


def _pulled(repo: Repo, targets: list[str]) -> bool:
    from dvc.exceptions import CheckoutError

    try:
        repo.pull(targets=targets)
    except CheckoutError:
        return False
    return True


def _imports_url(dvc_file: Path, url: str, out_name: str) -> bool:
    """Whether ``dvc_file`` is an import of ``url`` into ``out_name`` (and readable)."""
    try:
        stage = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
        return stage["deps"][0]["path"] == url and stage["outs"][0]["path"] == out_name
    except (OSError, yaml.YAMLError, TypeError, KeyError, IndexError):
        return False


def _dvc_project_root(directory: Path) -> Path:
    """The nearest DVC project holding ``directory``; a Git-less one is created there if none."""
    for candidate in (directory, *directory.parents):
        if (candidate / ".dvc").is_dir():
            return candidate
    from dvc.repo import Repo

    Repo.init(str(directory), no_scm=True)
    log.info("no DVC project above %s: initialised one there (without Git)", directory)
    return directory


@contextlib.contextmanager
def _throwaway_cache_repo(root: Path) -> Iterator[Repo]:
    """Open the DVC project with its cache in a temporary directory that is deleted afterwards.

    DVC fetches a partial import into its cache, then copies it into the workspace (links are
    not used for these imports). A kept cache would double the disk used by a 200+ MB zip
    for nothing, and would keep a corrupt download to be checked out again after the user
    deletes it. The workspace file is the only copy we keep.
    """
    from dvc.repo import Repo

    scratch = root / ".dvc" / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    cache_dir = tempfile.mkdtemp(prefix="download-cache-", dir=scratch)
    try:
        with Repo(str(root), config={"cache": {"dir": cache_dir}}) as repo:
            yield repo
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


@contextlib.contextmanager
def _dvc_output(progress: bool) -> Iterator[None]:
    """Keep DVC's own log handlers at WARNING, and its progress bars off unless ``progress``.

    DVC logs each step at INFO on its own stdout handler; its tqdm bars (shown on a terminal)
    turn themselves off when their module logger is quieter than ERROR.
    """
    levels = {"dvc": logging.WARNING}
    if not progress:
        levels |= {"dvc.progress": logging.CRITICAL, "dvc_data.callbacks": logging.CRITICAL}
    saved = {name: logging.getLogger(name).level for name in levels}
    for name, level in levels.items():
        logger = logging.getLogger(name)
        logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _why_download_failed(url: str, exc: Exception) -> str:
    """A reason in a few words: DVC says 'does not exist' for a 404 and a dead server alike."""
    from aiohttp import ClientPayloadError
    from dvc.exceptions import DownloadError

    try:
        response = requests.head(url, timeout=HTTP_TIMEOUT_S, allow_redirects=True)
    except requests.RequestException as probe_exc:
        return _short(probe_exc)
    if response.status_code >= 400:
        return f"HTTP {response.status_code} {response.reason}"
    dvc_says = str(exc).strip().splitlines()[0]
    if isinstance(exc, DownloadError | ClientPayloadError):
        return f"the transfer broke off or was cut short (DVC: {dvc_says})"
    return dvc_says


def _short(exc: requests.RequestException) -> str:
    """The innermost cause of a requests error, e.g. '[Errno 111] Connection refused'."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    text = str(exc)
    errno_at = text.rfind("[Errno")
    if errno_at >= 0:
        return text[errno_at:].rstrip("')\"")
    return text.splitlines()[0] if text else type(exc).__name__
