"""The "model from code" file that MLflow copies into the package and runs at load time.

It only names the model class, so the package holds no pickled object: loading imports
:mod:`two_tower_recsys.inference.pyfunc_model` from the package's own ``code/`` copy.
"""

import mlflow.models

from two_tower_recsys.inference.pyfunc_model import RecommenderModel

mlflow.models.set_model(RecommenderModel())
