"""A floor for exact scoring: a pyfunc model that only scores one user against the whole catalogue.

``bench_serving.py --ours product-only`` serves it in place of ours: random embeddings of the
ML-20M shape (138,493 users and 27,278 movies x 64, float32), and per request one product of the
user's vector with the 7 MB movie matrix; the
answer is empty, like the no-op's. What it costs over the no-op is what any exact scorer of this
catalogue pays per request on this machine, before seen filtering, top-k or building an answer.
Loaded by MLflow as "model from code".
"""

import mlflow.models
import mlflow.pyfunc
import torch

N_USERS, N_MOVIES, DIM = 138_493, 27_278, 64


class ProductOnlyModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        generator = torch.Generator().manual_seed(0)
        self.movies = torch.randn(DIM, N_MOVIES, generator=generator)
        self.users = torch.randn(N_USERS, DIM, generator=generator)

    def predict(self, context, model_input, params=None):
        user = int(model_input["user_id"].iloc[0]) % N_USERS
        self.users[user : user + 1] @ self.movies
        return []


mlflow.models.set_model(ProductOnlyModel())
