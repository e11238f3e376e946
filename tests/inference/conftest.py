"""Indexes for the inference tests: one with known answers, one random, one really trained."""

from __future__ import annotations

from pathlib import Path

import pytest
from inference_support import train_tiny_model, write_known_index, write_sequence_index
from random_index import write_random_index

from two_tower_recsys.inference.packaging import package_model
from two_tower_recsys.settings import InferConfig


@pytest.fixture(scope="session")
def known_index_dir(tmp_path_factory) -> Path:
    return write_known_index(tmp_path_factory.mktemp("known") / "artifacts")


@pytest.fixture(scope="session")
def random_index_dir(tmp_path_factory) -> Path:
    """200 users (ids 1..200) x 300 movies x 16, ~20 positives and ~10 other ratings per user."""
    directory = tmp_path_factory.mktemp("random") / "artifacts"
    write_random_index(
        directory, n_users=200, n_items=300, dim=16, mean_positives=20, mean_other_ratings=10, seed=3
    )
    return directory


@pytest.fixture(scope="session")
def trained_artifacts(tmp_path_factory) -> Path:
    """A two-tower model really trained (1 epoch) on tiny synthetic data: checkpoint included."""
    return train_tiny_model(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="session")
def packaged_model(random_index_dir, tmp_path_factory) -> Path:
    """The random index packaged as an MLflow pyfunc model (default infer settings)."""
    destination = tmp_path_factory.mktemp("package") / "mlflow_model"
    package_model(random_index_dir, destination, InferConfig())
    return destination


@pytest.fixture(scope="session")
def sequence_index_dir(tmp_path_factory) -> Path:
    """40 users x 60 movies x 16 with a sequence tower reading the last 6 movies of a history."""
    return write_sequence_index(tmp_path_factory.mktemp("sequence") / "artifacts")
