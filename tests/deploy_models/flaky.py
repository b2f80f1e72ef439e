"""A pyfunc model that answers small batches (its input example) but raises on larger ones: it
passes the health gate and then fails in production."""

import mlflow
from mlflow.pyfunc import PythonModel


class FailsOnLargeBatches(PythonModel):
    def predict(self, context, model_input, params=None):
        if len(model_input) > 2:
            raise ValueError("out of memory")
        return [int(v > 0) for v in model_input.iloc[:, 0]]


mlflow.models.set_model(FailsOnLargeBatches())
