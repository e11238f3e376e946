"""The MLflow package: self-contained, no checkpoint, replaced atomically on a re-run."""

import json
import shutil
import subprocess
import sys
import textwrap

import mlflow.pyfunc
import pytest
import yaml
from answers import assert_same_answers
from inference_support import write_known_index

from two_tower_recsys.artifacts.store import index_id, load_index, verified_manifest
from two_tower_recsys.errors import ArtifactError
from two_tower_recsys.inference.packaging import package_model
from two_tower_recsys.settings import InferConfig


def test_package_holds_code_index_signature_and_example(packaged_model):
    mlmodel = yaml.safe_load((packaged_model / "MLmodel").read_text())
    flavor = mlmodel["flavors"]["python_function"]
    assert flavor["code"] == "code" and (packaged_model / "code/two_tower_recsys/inference").is_dir()
    assert flavor["config"]["max_request_rows"] == 10_000
    assert "outputs" in mlmodel["signature"] and "recommendations" in mlmodel["signature"]["outputs"]
    example = json.loads((packaged_model / "serving_input_example.json").read_text())
    assert example["dataframe_split"]["columns"] == ["user_id", "k"]
    index_dir = packaged_model / "artifacts/index"
    assert load_index(index_dir).n_items == 300  # verified against its own manifest
    assert not (index_dir / "model.ckpt").exists()
    requirements = (packaged_model / "requirements.txt").read_text()
    assert "mlflow==" in requirements and "torch==" in requirements
    assert "lightning" not in requirements and "hydra" not in requirements


def test_serves_from_any_directory_with_its_own_code_and_without_lightning(packaged_model, tmp_path):
    script = textwrap.dedent(
        f"""
        import json, sys
        import mlflow.pyfunc
        model = mlflow.pyfunc.load_model({str(packaged_model)!r})
        answer = model.predict({{"user_id": [1], "k": [2]}})
        import two_tower_recsys
        print(json.dumps({{"code": two_tower_recsys.__file__, "lightning": "lightning" in sys.modules,
                          "hydra": "hydra" in sys.modules, "answer": answer}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"].startswith(str(packaged_model / "code"))  # the shipped copy, not src/
    assert not report["lightning"] and not report["hydra"]
    assert len(report["answer"][0]["recommendations"]) == 2


def test_rerun_replaces_the_package_and_a_failed_run_keeps_it(known_index_dir, tmp_path):
    destination = tmp_path / "artifacts" / "mlflow_model"
    package_model(known_index_dir, destination, InferConfig(max_request_rows=3))
    package_model(known_index_dir, destination, InferConfig(max_request_rows=4))  # no "already exists"
    config = yaml.safe_load((destination / "MLmodel").read_text())["flavors"]["python_function"]["config"]
    assert config["max_request_rows"] == 4
    assert sorted(p.name for p in destination.parent.iterdir()) == ["mlflow_model"]  # no staging left

    broken = write_known_index(tmp_path / "broken")
    (broken / "titles.parquet").write_bytes(b"not parquet")
    with pytest.raises(ArtifactError, match="titles.parquet"):
        package_model(broken, destination, InferConfig())
    model = mlflow.pyfunc.load_model(str(destination))  # the previous package, intact
    assert model.predict({"user_id": [7], "k": [1]})[0]["recommendations"][0][0] == 20
    assert sorted(p.name for p in destination.parent.iterdir()) == ["mlflow_model"]


def test_a_package_older_than_the_index_it_sits_in_is_refused(tmp_path):
    artifacts = write_known_index(tmp_path / "artifacts")
    package = package_model(artifacts, artifacts / "mlflow_model", InferConfig()).path
    metadata = yaml.safe_load((package / "MLmodel").read_text())["metadata"]["two_tower_recsys"]
    assert metadata["index_id"] == index_id(verified_manifest(artifacts))
    assert mlflow.pyfunc.load_model(str(package)).predict({"user_id": [7], "k": [1]})  # fresh: accepted

    write_known_index(artifacts, temperature=2.0)  # retrained: another index, the package stays
    with pytest.raises(ArtifactError, match=r"rerun `two-tower package-mlflow`$"):
        mlflow.pyfunc.load_model(str(package))
    moved = shutil.copytree(package, tmp_path / "shipped" / "mlflow_model")  # on its own: its own index
    assert mlflow.pyfunc.load_model(str(moved)).predict({"user_id": [7], "k": [1]})


@pytest.mark.parametrize(
    "infer", [InferConfig(index="hnsw", hnsw_m=8), InferConfig(index="pq")], ids=["hnsw", "pq"]
)
def test_an_approximate_package_ships_its_index_verified_by_the_manifest(random_index_dir, tmp_path, infer):
    from two_tower_recsys.inference.candidates import ann_params
    from two_tower_recsys.inference.recommender import Recommender

    params = ann_params(infer)
    destination = tmp_path / infer.index / "mlflow_model"
    package_model(random_index_dir, destination, infer)
    index_dir = destination / "artifacts/index"
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert params.file_name in manifest["files"]
    assert manifest["ann"] == params.build_settings()
    assert "faiss-cpu==" in (destination / "requirements.txt").read_text()
    model = mlflow.pyfunc.load_model(str(destination))
    assert model.unwrap_python_model().recommender.ann is not None
    core = Recommender.from_settings(random_index_dir, infer)
    assert_same_answers(model.predict({"user_id": [1, 2], "k": [5, 5]}), core.recommend([1, 2], 5))

    shipped = index_dir / params.file_name
    shipped.write_bytes(shipped.read_bytes()[:-8])
    with pytest.raises(ArtifactError, match=params.file_name):
        mlflow.pyfunc.load_model(str(destination))


def test_the_shipped_index_is_read_at_load_else_one_is_built_in_memory_with_a_warning(
    random_index_dir, tmp_path, caplog
):
    destination = tmp_path / "pq" / "mlflow_model"
    package_model(random_index_dir, destination, InferConfig(index="pq"))
    with caplog.at_level("WARNING", logger="two_tower_recsys.inference.candidates"):
        model = mlflow.pyfunc.load_model(str(destination), model_config={"pq_refine_factor": 20})
    assert "in memory" not in caplog.text  # the query-time setting does not change the shipped file
    assert model.unwrap_python_model().recommender.ann.refine_factor == 20

    exact_package = tmp_path / "exact" / "mlflow_model"
    package_model(random_index_dir, exact_package, InferConfig(answer_table_k=0))
    with caplog.at_level("WARNING", logger="two_tower_recsys.inference.candidates"):
        model = mlflow.pyfunc.load_model(str(exact_package), model_config={"index": "pq"})
    assert "no pq index built with" in caplog.text and "building one in memory" in caplog.text
    assert model.predict({"user_id": [1], "k": [3]}) == mlflow.pyfunc.load_model(str(destination)).predict(
        {"user_id": [1], "k": [3]}
    )
