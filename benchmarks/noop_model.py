"""The serving floor: an MLflow pyfunc model that answers every request with an empty list.

``bench_serving.py`` serves it beside ours, on the same server stack, so that every figure can be
read against what the scoring server itself costs (HTTP, JSON parsing, the DataFrame, the answer).
Loaded by MLflow as "model from code".
"""

import mlflow.models
import mlflow.pyfunc


class NoopModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return []


mlflow.models.set_model(NoopModel())
