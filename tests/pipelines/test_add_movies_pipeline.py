"""`two-tower add-movies`: bad input is one line naming the problem, never a traceback."""

from __future__ import annotations

from two_tower_recsys.pipelines import add_movies_pipeline
from two_tower_recsys.pipelines.hydra_edge import compose_settings, report_user_errors


def test_adding_movies_before_any_training_is_one_line_and_exit_status_2(tmp_path, capsys):
    new_movies = tmp_path / "new_movies.csv"
    new_movies.write_text("movieId,title,genres\n999999,A New Movie (2030),Drama\n")
    artifacts = tmp_path / "artifacts"
    settings = compose_settings(
        [
            f"paths.new_movies={new_movies}",
            f"paths.artifacts_dir={artifacts}",
            f"paths.mlflow_model_dir={tmp_path / 'mlflow_model'}",
        ]
    )
    assert report_user_errors(lambda: add_movies_pipeline.run(settings)) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert f"{artifacts} has no manifest.json" in error
    assert not (tmp_path / "mlflow_model").exists()
