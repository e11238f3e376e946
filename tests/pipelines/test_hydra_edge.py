"""Commands leave their real outputs and nothing else: no outputs/<date>/<time>/.hydra/, no log file."""

import pytest
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
