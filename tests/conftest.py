"""Shared fixtures: tiny MovieLens-format zips written on the fly, the real small dataset if present."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from support import SHARED_SMALL_ZIP, VENV_BIN, free_port, running_server, write_movielens_zip


@pytest.fixture
def movielens_zip(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``movielens_zip(ratings, movies=None, name='ratings.zip', ...)`` -> path of the zip."""

    def make(ratings: Sequence[tuple], movies=None, name: str = "ratings.zip", **kwargs) -> Path:
        return write_movielens_zip(tmp_path / name, ratings, movies, **kwargs)

    return make


@pytest.fixture
def small_movielens_zip() -> Path:
    """The real ml-latest-small.zip from ../shared/data; skipped where it is absent."""
    if not SHARED_SMALL_ZIP.exists():
        pytest.skip(f"real MovieLens data not available: {SHARED_SMALL_ZIP} is absent")
    return SHARED_SMALL_ZIP


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """A real ``mlflow server`` with a SQLite backend on a free loopback port; yields its URI."""
    port = free_port()
    root = tmp_path / "mlflow-server"
    root.mkdir()
    uri = f"http://127.0.0.1:{port}"
    command = [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
    command += ["--default-artifact-root", str(root / "artifacts"), "--workers", "1"]
    with running_server(command, root, f"{uri}/health"):
        yield uri
