"""Commands leave their real outputs and nothing else: no outputs/<date>/<time>/.hydra/, no log file."""

import subprocess
import sys

import pytest
import yaml
from support import TINY_SYNTHETIC, run_cli

pytestmark = pytest.mark.slow


def leftovers(directory) -> list[str]:
    return sorted(
        str(path.relative_to(directory))
        for path in directory.rglob("*")
        if path.name in {"outputs", ".hydra", "multirun"} or path.suffix == ".log"
    )


def test_train_infer_and_evaluate_leave_only_their_outputs(tmp_path):
    commands = [
        ["train", *TINY_SYNTHETIC, "trainer.max_epochs=1", "logging.enabled=false"],
        ["infer", "infer.user_id=1", "infer.k=3"],
        ["evaluate", *TINY_SYNTHETIC],
        ["evaluate", *TINY_SYNTHETIC, "model=popularity"],
    ]
    for args in commands:
        result = run_cli(args, tmp_path)
        assert result.returncode == 0, (args[0], result.stderr[-2000:])
        assert leftovers(tmp_path) == [], args[0]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["artifacts", "data", "plots"]


def test_a_failing_command_leaves_nothing_either(tmp_path):
    result = run_cli(["infer", "paths.artifacts_dir=nowhere"], tmp_path)
    assert result.returncode == 2
    assert list(tmp_path.iterdir()) == []


# `two-tower train --cfg job`, with TrainerConfig's max_epochs default changed before the CLI starts.
CHANGED_DEFAULT = """
import dataclasses, sys
from two_tower_recsys.settings import TrainerConfig
dataclasses.fields(TrainerConfig)[0].default = 7  # max_epochs
from two_tower_recsys import cli
cli.main(["train", "--cfg", "job", "trainer.batch_size=64"])
"""


def test_cfg_job_prints_the_dataclass_defaults_and_the_overrides(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", CHANGED_DEFAULT], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    printed = yaml.safe_load(result.stdout)  # plain YAML: no Python object tags
    assert printed["trainer"]["max_epochs"] == 7  # no YAML file repeats the default
    assert printed["trainer"]["batch_size"] == 64
    assert printed["paths"]["processed_dir"] == "data/processed"
    assert printed["paths"]["raw_zip"] == "data/raw/${data.name}.zip"
    assert list(tmp_path.iterdir()) == []
