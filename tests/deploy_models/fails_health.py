"""A pyfunc model that loads but raises on every prediction (fails the health check)."""

import mlflow
from mlflow.pyfunc import PythonModel


class AlwaysRaises(PythonModel):
    def predict(self, context, model_input, params=None):
        raise ValueError("division by zero in feature scaling")


mlflow.models.set_model(AlwaysRaises())
