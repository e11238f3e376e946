"""Fixtures shared by the synthetic generator's tests: the default spec's zip, written once."""

from __future__ import annotations

from pathlib import Path

import pytest

from two_tower_recsys.data.movielens import MovieLensTables, read_movielens_zip
from two_tower_recsys.data.synthetic import write_synthetic_zip
from two_tower_recsys.settings import SyntheticSpec


@pytest.fixture(scope="session")
def default_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zip of the default spec, the shape of configs/data/synthetic.yaml: the README's main job."""
    path = tmp_path_factory.mktemp("synthetic") / "synthetic.zip"
    write_synthetic_zip(path, SyntheticSpec(), name="synthetic", progress=False)
    return path


@pytest.fixture(scope="session")
def default_tables(default_zip: Path) -> MovieLensTables:
    return read_movielens_zip(default_zip)
