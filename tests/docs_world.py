"""The worlds the pages of ``docs/`` are written against, built in the page's sandbox (the current
folder, ``MLFLOW_TRACKING_URI``) by a hidden block at the top of the page:

<!-- invisible-code-block: python
from tests.docs_world import governed_fraud
governed_fraud()
-->

Each world is made with plain (ungoverned) MLflow calls, as a team's history would have left it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tests.monitoring_helpers import batch, train


def _registry() -> str:
    return os.environ["MLFLOW_TRACKING_URI"]


def _forget_uris(uri: str) -> None:
    """Unset the URIs a world set in-process; ``set_tracking_uri(None)`` also deletes the
    ``MLFLOW_TRACKING_URI`` variable, which the page's next blocks read: put it back."""
    import mlflow

    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    os.environ["MLFLOW_TRACKING_URI"] = uri


def governed_fraud(versions: int = 3, production: str = "2") -> None:
    """``fraud`` v1..v3 (columns amount, age, score), registered through steward (content digests
    recorded), each with a signature, an input example, ``accuracy`` 0.97, a monitoring baseline
    and an ``owner`` tag; ``@production`` on v2, and v1
    held it before (so a rollback has somewhere to go). Current data in ``today.parquet`` and
    ``batches/*.csv``."""
    from mlflow import MlflowClient

    uri = _registry()
    for seed in range(versions):
        train(uri, seed=seed, governed=True)
    _forget_uris(uri)
    client = MlflowClient(uri, uri)
    for version in range(1, versions + 1):
        client.set_model_version_tag("fraud", str(version), "owner", "alice@example.com")
    governed = MlflowClient(uri, f"steward+{uri}")  # the moves are in steward's history
    governed.set_registered_model_alias("fraud", "production", "1")
    governed.set_registered_model_alias("fraud", "production", production)
    # Current data drawn as each version's training data was: healthy, whatever the seed.
    _training_rows(int(production) - 1).iloc[:400].to_parquet("today.parquet")
    Path("batches").mkdir(exist_ok=True)
    for day in range(2):
        rows = _training_rows(versions - 1).iloc[day * 300 : (day + 1) * 300]
        rows.to_csv(f"batches/day-{day}.csv", index=False)


def _training_rows(seed: int):
    return batch(np.random.default_rng(seed), n=3000)


def deployable_fraud() -> None:
    """``fraud`` with columns ``x0``, ``x1``, ``x2`` in ``./mlflow.db``: v1 (predicts 1 when
    ``x0 > 0``) holds ``@production``, v2 predicts the opposite, v3 fails to load, v4 fails its
    health check, v5 fails on batches larger than its input example (the deployment tests'
    registry, ``tests/deploying.py``)."""
    from tests.deploying import build_registry

    build_registry(Path("mlflow.db").resolve())


def crash_gateway(name: str) -> None:
    """SIGKILL the gateway of deployment ``name`` started from this folder's registry, as a crash
    would (its scoring servers get SIGTERM through ``PR_SET_PDEATHSIG``)."""
    import signal

    here = str(Path.cwd()).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"onprem.gateway\0{name}\0".encode() in cmdline and here in cmdline:
            os.kill(int(entry.name), signal.SIGKILL)
            return
    raise AssertionError(f"no gateway of {name!r} is running")


def logged_run() -> str:
    """A run in this folder's registry with a model logged with a signature and an input example,
    not registered; returns the run id."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    X = _training_rows(0)[["amount", "age", "score"]]
    model = LogisticRegression().fit(X, (X["amount"] > 0).astype(int))
    uri = _registry()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run() as run:
            mlflow.log_metric("accuracy", 0.97)
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(X, model.predict(X)),
                input_example=X.head(2),
            )
    finally:
        _forget_uris(uri)
    return run.info.run_id
