"""`two-tower infer` as a user runs it: JSON on stdout, one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest
from inference_support import MOVIE_IDS, title, write_known_index
from support import run_cli

from two_tower_recsys.pipelines import infer_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings, report_user_errors


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return write_known_index(tmp_path_factory.mktemp("infer") / "artifacts")


def test_cli_prints_the_recommendations_as_json(artifacts, tmp_path):
    result = run_cli(["infer", "infer.user_id=7", "infer.k=2", f"paths.artifacts_dir={artifacts}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == {
        "user_id": 7,
        "k": 2,
        "fallback": False,
        "recommendations": [[20, 5.0, title(20)], [40, 3.0, title(40)]],  # 10 and 30 were seen
    }


def test_module_entry_point_gives_a_marked_fallback_and_clamps_k(artifacts, tmp_path):
    command = [sys.executable, "-m", "two_tower_recsys.pipelines.infer_pipeline"]
    args = ["infer.user_id=12345", "infer.k=100", f"paths.artifacts_dir={artifacts}"]
    result = subprocess.run([*command, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout)
    assert answer["fallback"] is True and answer["k"] == len(MOVIE_IDS)
    assert [row[0] for row in answer["recommendations"]] == [20, 30, 60, 10, 40, 50]


def test_cli_bad_k_is_one_line_on_stderr_and_exit_2(artifacts, tmp_path):
    result = run_cli(["infer", f"paths.artifacts_dir={artifacts}", "infer.k=0"], tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.strip() == "error: infer.k must be positive, got 0"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("infer.k=2.5", "error: infer.k: Value '2.5' of type 'float' could not be converted to Integer"),
        (
            "infer.user_id=abc",
            "error: infer.user_id: Value 'abc' of type 'str' could not be converted to Integer",
        ),
        ("paths.artifacts_dir=missing", "error: artifacts at missing has no manifest.json"),
    ],
)
def test_bad_input_is_a_one_line_user_error(artifacts, override, message, capsys):
    overrides = [f"paths.artifacts_dir={artifacts}", override]
    assert report_user_errors(lambda: infer_pipeline.run(compose_settings(overrides))) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(message)
    assert len(captured.err.strip().splitlines()) == 1
