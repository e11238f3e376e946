"""Crash-safe file output and checksums.

Every output is written to a temporary file in the destination directory and renamed into place,
so a reader sees either the previous complete file or the new complete file, never a partial one.
A directory of outputs is staged whole and committed with its manifest written last: a reader that
verifies the manifest never trusts a mix of old and new files.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CHUNK = 4 * 1024 * 1024
MANIFEST_NAME = "manifest.json"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


_DEFAULT_FILE_MODE = 0o666 & ~_umask()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks so large files use bounded memory."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def md5_file(path: Path) -> str:
    return file_digest(path, "md5")


@contextlib.contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it over ``destination`` on success."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, _DEFAULT_FILE_MODE)  # mkstemp makes files private (0600); outputs are not
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(destination: Path, data: bytes) -> None:
    with atomic_path(destination) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(destination: Path, text: str) -> None:
    atomic_write_bytes(destination, text.encode("utf-8"))


def atomic_write_json(destination: Path, payload: Any) -> None:
    atomic_write_text(destination, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def staged_directory(destination: Path) -> Iterator[Path]:
    """Yield an empty staging directory beside ``destination``; removed afterwards whatever happens.

    Fill it, then call :func:`commit_staged_directory` inside the ``with`` block.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.staging-", dir=destination.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_manifest(directory: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Write ``manifest.json`` listing the sha256 and size of every file in ``directory``."""
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        rel = path.relative_to(directory).as_posix()
        files[rel] = {"sha256": file_digest(path), "bytes": path.stat().st_size}
    manifest = {**extra, "files": files}
    atomic_write_json(directory / MANIFEST_NAME, manifest)
    return manifest


def commit_staged_directory(staging: Path, destination: Path) -> None:
    """Move every file of ``staging`` into ``destination``, the manifest last.

    The destination's old manifest is removed first: should the process die between the renames,
    no manifest vouches for the mixed files, so loaders refuse them instead of trusting them.
    Other files already in ``destination`` are left alone.
    """
    destination.mkdir(parents=True, exist_ok=True)
    new_manifest = staging / MANIFEST_NAME
    if not new_manifest.exists():
        raise ValueError(f"{staging} has no {MANIFEST_NAME}; write it before committing")
    (destination / MANIFEST_NAME).unlink(missing_ok=True)
    staged = [p for p in staging.rglob("*") if p.is_file() and p.name != MANIFEST_NAME]
    for path in staged:
        target = destination / path.relative_to(staging)
        if target.is_dir():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    os.replace(new_manifest, destination / MANIFEST_NAME)


def replace_directory(source: Path, destination: Path) -> None:
    """Put the complete directory ``source`` at ``destination``, replacing (and deleting) any old one.

    On Linux the two are swapped in one atomic step (``renameat2(RENAME_EXCHANGE)``), so a reader
    that opens ``destination`` gets the old or the new directory, never neither and never a mix.
    Elsewhere the old one is first renamed aside: never a partial directory, but ``destination`` is
    briefly missing. ``source`` must be on the same filesystem, e.g. staged beside ``destination``.
    """
    source, destination = Path(source), Path(destination)
    if not destination.exists():
        os.rename(source, destination)
        return
    if not _exchange_paths(source, destination):
        aside = source.with_name(f"{source.name}.previous")
        os.rename(destination, aside)
        os.rename(source, destination)
        aside.rename(source)
    shutil.rmtree(source)  # now the previous destination


def _exchange_paths(first: Path, second: Path) -> bool:
    """Swap two paths atomically; False where the OS or filesystem cannot (then nothing changed)."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # glibc >= 2.28
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def verify_manifest(directory: Path, what: str) -> dict[str, Any]:
    """Check every file listed in ``directory``'s manifest; return the manifest.

    Raises ``ValueError`` with one line naming the first missing, truncated or altered file.
    """
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.exists():
        raise ValueError(f"{what} at {directory} has no {MANIFEST_NAME} (incomplete or never written)")
    try:
        manifest = read_json(manifest_path)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: {manifest_path} is not valid JSON ({exc.msg})") from None
    for rel, expected in manifest.get("files", {}).items():
        path = directory / rel
        if not path.exists():
            raise ValueError(f"{what}: {path} is missing")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise ValueError(
                f"{what}: {path} has {size} bytes, manifest says {expected['bytes']} (truncated or replaced)"
            )
        if file_digest(path) != expected["sha256"]:
            raise ValueError(f"{what}: {path} does not match its checksum in {MANIFEST_NAME}")
    return manifest
