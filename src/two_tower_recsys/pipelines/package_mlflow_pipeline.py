"""``two-tower package-mlflow``: write the MLflow pyfunc model to ``paths.mlflow_model_dir``.

Default ``artifacts/mlflow_model``; a re-run replaces the previous package in one step. Serve it
with ``mlflow models serve -m artifacts/mlflow_model -p 5000 --host 127.0.0.1 --env-manager local``.
"""

from __future__ import annotations

from two_tower_recsys.inference.packaging import package_model
from two_tower_recsys.pipelines.hydra_edge import hydra_entry
from two_tower_recsys.settings import AppConfig


def run(settings: AppConfig) -> None:
    packaged = package_model(settings.paths.artifacts_dir, settings.paths.mlflow_model_dir, settings.infer)
    print(
        f"wrote MLflow pyfunc model to {packaged.path} ({packaged.n_users} users x {packaged.n_items} "
        f"movies); serve it with: two-tower serve (or: mlflow models serve -m {packaged.path} -p 5000 "
        "--host 127.0.0.1 --env-manager local, with the venv's bin on PATH)"
    )


main = hydra_entry(run)

if __name__ == "__main__":
    main()
