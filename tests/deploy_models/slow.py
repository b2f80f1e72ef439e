"""A pyfunc model that answers at once, except for rows with x0 above 100, which take 3 seconds
(longer than the request_timeout the tests give it)."""

import time

import mlflow
from mlflow.pyfunc import PythonModel


class SlowOnHugeAmounts(PythonModel):
    def predict(self, context, model_input, params=None):
        if (model_input.iloc[:, 0] > 100).any():
            time.sleep(3)
        return [int(v > 0) for v in model_input.iloc[:, 0]]


mlflow.models.set_model(SlowOnHugeAmounts())
