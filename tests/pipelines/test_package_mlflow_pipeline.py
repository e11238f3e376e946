"""`two-tower package-mlflow`: writes the pyfunc package, re-runs replace it, errors are one line."""

import yaml
from inference_support import write_known_index
from support import run_cli

from two_tower_recsys.pipelines import package_mlflow_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings, report_user_errors


def test_cli_packages_beside_the_artifacts(tmp_path):
    artifacts = write_known_index(tmp_path / "artifacts")
    result = run_cli(["package-mlflow", f"paths.artifacts_dir={artifacts}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"mlflow models serve -m {artifacts / 'mlflow_model'}" in result.stdout
    assert (artifacts / "mlflow_model" / "MLmodel").exists()


def test_a_rerun_replaces_the_package(tmp_path):
    artifacts = write_known_index(tmp_path / "artifacts")
    for rows in (50, 60):
        package_mlflow_pipeline.run(
            compose_settings([f"paths.artifacts_dir={artifacts}", f"infer.max_request_rows={rows}"])
        )
    mlmodel = yaml.safe_load((artifacts / "mlflow_model" / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["config"]["max_request_rows"] == 60
    assert sorted(p.name for p in artifacts.iterdir() if "mlflow_model" in p.name) == ["mlflow_model"]


def test_missing_artifacts_are_a_one_line_error_and_create_nothing(tmp_path, capsys):
    settings = compose_settings([f"paths.artifacts_dir={tmp_path / 'nowhere'}"])
    assert report_user_errors(lambda: package_mlflow_pipeline.run(settings)) == 2
    assert "nowhere has no manifest.json" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()
