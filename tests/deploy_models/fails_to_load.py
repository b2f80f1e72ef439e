"""A pyfunc model (models from code) whose loading fails, as a model with missing weights does."""

import mlflow
from mlflow.pyfunc import PythonModel


class FailsToLoad(PythonModel):
    def load_context(self, context):
        raise RuntimeError("weights file is missing: model.bin")

    def predict(self, context, model_input, params=None):
        return [0] * len(model_input)


mlflow.models.set_model(FailsToLoad())
