"""What the benchmarks share: the five-policy configuration and logging real models.

Importing it turns MLflow's usage telemetry off (unless set otherwise) for the benchmark and the
servers it starts: benchmarks send nothing off the machine.
"""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

#: Five built-in policies that all pass for the benchmark's models, so every timed call writes.
FIVE_POLICIES = """\
policies:
  - use: require-signature
  - use: allowed-requirements
    with: {deny: [tensorflow], require_pinned: true}
  - use: required-tags
    when: {action: set_alias}
    with: {tags: [owner]}
  - use: metric-threshold
    when: {action: set_alias}
    with: {metric: accuracy, min: 0.8}
  - use: freeze-window
    when: {action: set_alias}
    with: {windows: [{start: "2001-01-01T00:00", end: "2001-01-02T00:00"}]}
"""


def log_models(tracking_uri: str, count: int) -> list[tuple[str, str]]:
    """``count`` distinct logged models (run id, model id), accuracy 0.93, with a signature and
    pinned requirements, so every version gets a source of its own."""
    import os

    import mlflow
    import mlflow.sklearn
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(50, 4))
    y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    signature = infer_signature(X, model.predict(X))
    # set_tracking_uri(None) below also unsets MLFLOW_TRACKING_URI: put back what was there.
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    logged = []
    try:
        for _ in range(count):
            with mlflow.start_run() as run:
                mlflow.log_metric("accuracy", 0.93)
                info = mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=signature,
                    pip_requirements=["scikit-learn==1.5.0", "numpy==2.0.0"],
                )
            logged.append((run.info.run_id, info.model_id))
    finally:
        mlflow.set_tracking_uri(None)
        if previous_env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env
    return logged
