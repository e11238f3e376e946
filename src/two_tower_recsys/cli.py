"""The ``two-tower`` console script: ``two-tower <command> [hydra overrides...]``.

Each command is the ``main`` of a module under ``two_tower_recsys.pipelines``, so
``two-tower train trainer.max_epochs=7`` and
``python -m two_tower_recsys.pipelines.train_pipeline trainer.max_epochs=7`` run the same code.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": (
        "train_pipeline",
        "prepare data, evaluate popularity, train and evaluate the two-tower model",
    ),
    "tune": (
        "tune_pipeline",
        "choose hyperparameters on validation with Optuna (e.g. hparams_search=sequence)",
    ),
    "evaluate": (
        "evaluate_pipeline",
        "evaluate a model (model=popularity or the trained two-tower)",
    ),
    "synth": ("synth_pipeline", "write a synthetic MovieLens-format zip (data=synthetic ...)"),
    "infer": ("infer_pipeline", "print the top-K movies for infer.user_id as JSON"),
    "similar": ("similar_pipeline", "print the infer.k movies most like infer.movie_id as JSON"),
    "add-movies": ("add_movies_pipeline", "add the movies of paths.new_movies to the trained index"),
    "recommend-all": ("recommend_all_pipeline", "write the top-K of every user to paths.recommendations"),
    "export-onnx": ("export_onnx_pipeline", "export the scorer to artifacts/model_scoring.onnx"),
    "package-mlflow": (
        "package_mlflow_pipeline",
        "write the MLflow pyfunc model to artifacts/mlflow_model",
    ),
    "serve": ("serve_pipeline", "serve the packaged model over HTTP (MLflow's scoring server)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: two-tower <command> [key=value ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += [
        "",
        "Overrides use Hydra syntax, e.g. `two-tower train data=ml-latest-small trainer.max_epochs=7`.",
        "`two-tower <command> --help` lists the configuration.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(usage())
        return
    command, overrides = args[0], args[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(f"two_tower_recsys.pipelines.{COMMANDS[command][0]}")
    # Hydra reads sys.argv itself: present the overrides as if the module's file had been run
    # directly. Lightning's DDP launcher re-runs sys.argv in each worker, so argv[0] must be
    # that real file.
    sys.argv = [module.__file__, *overrides]
    module.main()


if __name__ == "__main__":
    main()
