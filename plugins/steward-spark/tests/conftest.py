"""Fixtures of the mlflow-steward-spark tests: one local[2] Spark session for each test module
(a JVM starts in seconds, not milliseconds), a SQLite registry with a model whose baseline has
three numeric columns and a categorical one, and request-log-like Parquet tables written here."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

NUMERIC = ["amount", "age", "score"]
CITIES = ["north", "south", "east", "west"]


def features(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    """Rows as the model's baseline has them; ``shift`` moves ``age`` and the city shares."""
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=NUMERIC)
    frame["age"] += shift
    shares = [0.25, 0.25, 0.25, 0.25] if not shift else [0.55, 0.15, 0.15, 0.15]
    frame["city"] = rng.choice(CITIES, n, p=shares)
    return frame


def request_log(rng: np.random.Generator, n: int, shift: float, now: float) -> pd.DataFrame:
    """``n`` rows of version 1 in the last half hour (``shift`` applied), and as many that the
    monitor must not see: version 2's, and version 1's from two hours ago (both far off)."""
    recent = pd.to_datetime(now - rng.uniform(60, 1800, n), unit="s", utc=True)
    old = pd.to_datetime(now - rng.uniform(7200, 9000, n), unit="s", utc=True)
    parts = [
        features(rng, n, shift).assign(__version__="1", __ts__=recent),
        features(rng, n, 5.0).assign(__version__="2", __ts__=recent),
        features(rng, n, 5.0).assign(__version__="1", __ts__=old),
    ]
    frame = pd.concat(parts, ignore_index=True)
    frame["__ts__"] = frame["__ts__"].astype("datetime64[us, UTC]")
    frame["__latency_ms__"] = rng.uniform(1, 20, len(frame))  # read by no monitor
    return frame.sample(frac=1.0, random_state=1, ignore_index=True)


@dataclass
class World:
    root: Path
    db_uri: str
    config: Path
    now: float


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    """A local[2] session for the module; the data source reuses it (and leaves it running)."""
    from pyspark.sql import SparkSession

    before = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("mlflow-steward-spark tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    if before is None:
        os.environ.pop("PYSPARK_PYTHON", None)
    else:
        os.environ["PYSPARK_PYTHON"] = before


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    """A registry with ``fraud`` v1 (a baseline of 3,000 rows, categorical ``city`` included),
    steward's environment pointing at it; restored afterwards."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    import mlflow_steward as steward

    root = tmp_path_factory.mktemp("spark-world")
    db_uri = f"sqlite:///{root / 'mlflow.db'}"
    config = root / "steward.yaml"
    config.write_text("monitors: {}\n")
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_STEWARD_CONFIG", "HOME")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(
        MLFLOW_TRACKING_URI=db_uri,
        MLFLOW_REGISTRY_URI=db_uri,
        MLFLOW_STEWARD_CONFIG=str(config),
        HOME=str(root),
    )
    rng = np.random.default_rng(0)
    X = features(rng, 3000)
    y = (X["amount"] > 0).astype(int)
    model = LogisticRegression().fit(X[NUMERIC], y)
    mlflow.set_tracking_uri(db_uri)
    mlflow.set_registry_uri(db_uri)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X[NUMERIC], model.predict(X[NUMERIC])),
            # named, not inferred (MLflow loads the model in a new process to infer them: ~5 s)
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(),
        )
        steward.log_baseline(X, y, model.predict(X[NUMERIC]), model_info=info)
    mlflow.register_model(info.model_uri, "fraud")
    try:
        yield World(root, db_uri, config, time.time())
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
