"""``two-tower synth``: the configs compose, bad sizes are one-line errors, the CLI writes the zip."""

from __future__ import annotations

import re

import pytest
from support import run_cli

from two_tower_recsys.data.movielens import read_movielens_zip
from two_tower_recsys.data.synthetic import read_synthetic_spec
from two_tower_recsys.errors import ConfigError
from two_tower_recsys.pipelines.hydra_edge import compose_settings
from two_tower_recsys.pipelines.synth_pipeline import run
from two_tower_recsys.settings import SyntheticSpec


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"users": 0}, "data.synthetic.users must be positive"),
        ({"movies": -3}, "data.synthetic.movies must be positive"),
        ({"clusters": 0}, "data.synthetic.clusters must be positive"),
        ({"ratings": 10}, "data.synthetic.ratings must be at least data.synthetic.users"),
        ({"users": 3, "movies": 2, "ratings": 7}, "data.synthetic.ratings must be at most"),
        ({"movies": 10, "clusters": 11, "ratings": 5_000}, "data.synthetic.clusters must be at most"),
        ({"seed": -1}, "data.synthetic.seed must be non-negative"),
    ],
)
def test_invalid_spec_is_a_config_error(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        SyntheticSpec(**{**SyntheticSpec().__dict__, **overrides})


def test_synth_needs_a_synthetic_dataset():
    with pytest.raises(ConfigError, match="use data=synthetic or data=synthetic-20m"):
        run(compose_settings(["data=ml-20m"]))


def test_synthetic_configs_compose():
    assert compose_settings(["data=synthetic"]).data.synthetic == SyntheticSpec()
    big = compose_settings(["data=synthetic-20m"]).data.synthetic
    assert (big.users, big.movies, big.ratings, big.clusters) == (138_493, 27_278, 20_000_263, 64)


def test_cli_writes_the_zip(tmp_path):
    path = tmp_path / "raw" / "small.zip"
    sizes = ["data.synthetic.users=50", "data.synthetic.movies=60", "data.synthetic.ratings=900"]
    result = run_cli(["synth", "data=synthetic", *sizes, f"paths.raw_zip={path}"], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert read_synthetic_spec(path) == SyntheticSpec(users=50, movies=60, ratings=900)
    assert read_movielens_zip(path).ratings.height == 900


def test_cli_reports_an_invalid_size_in_one_line(tmp_path):
    path = tmp_path / "bad.zip"
    args = ["synth", "data=synthetic", "data.synthetic.ratings=10", f"paths.raw_zip={path}"]
    result = run_cli(args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: data.synthetic.ratings must be at least data.synthetic.users "
        "(2000: every user rates a movie), got 10"
    ]
    assert not path.exists()
