"""Fixtures of the steward-aws tests: moto's threaded server (with the emulator's UpdateEndpoint)
and a governed registry (steward+sqlite) with two versions of a model, both shared by every test
(each test uses deployments of its own names and restores steward.yaml)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from emulator import Emulator

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

COLUMNS = ["x0", "x1", "x2"]
BUCKET = "steward-models"
ROLE = "arn:aws:iam::123456789012:role/steward-sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlflow-pyfunc:3.17.2"


@dataclass
class AWS:
    emulator: Emulator

    @property
    def url(self) -> str:
        return self.emulator.url

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1")

    def options(self, **more: Any) -> list[str]:
        """``-C key=value`` arguments of a deployment against the emulator."""
        base = {
            "bucket": BUCKET,
            "image_uri": IMAGE,
            "role_arn": ROLE,
            "endpoint_url": self.url,
            "s3_endpoint_url": self.url,
            "poll_interval": "0.1s",
            **more,
        }
        out: list[str] = []
        for key, value in base.items():
            out += ["-C", f"{key}={value}"]
        return out

    def resources(self, prefix: str = "") -> dict[str, set[str]]:
        """What moto holds: model, endpoint config and endpoint names, S3 object URIs."""
        sm = self.client("sagemaker")
        s3 = self.client("s3")
        objects = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        return {
            "models": {m["ModelName"] for m in sm.list_models()["Models"]}
            if prefix == ""
            else {
                m["ModelName"]
                for m in sm.list_models()["Models"]
                if m["ModelName"].startswith(prefix)
            },
            "configs": {
                c["EndpointConfigName"]
                for c in sm.list_endpoint_configs()["EndpointConfigs"]
                if c["EndpointConfigName"].startswith(prefix)
            },
            "endpoints": {
                e["EndpointName"]
                for e in sm.list_endpoints()["Endpoints"]
                if e["EndpointName"].startswith(prefix)
            },
            "objects": {
                f"s3://{BUCKET}/{o['Key']}"
                for o in objects
                if "/capture/" not in o["Key"] and o["Key"].split("/")[1].startswith(prefix)
            },
        }


def recorded(runtime: dict[str, Any], endpoint: bool = True) -> dict[str, set[str]]:
    """The same sets from a deployment's runtime record."""
    releases = runtime.get("releases", [])
    return {
        "models": {r["model"] for r in releases if r.get("model")},
        "configs": {r["config"] for r in releases if r.get("config")},
        "endpoints": {runtime["endpoint"]} if endpoint and runtime.get("endpoint_arn") else set(),
        "objects": {r["model_data"] for r in releases if r.get("model_data")},
    }


@pytest.fixture(scope="session")
def aws() -> Iterator[AWS]:
    saved = dict(os.environ)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        os.environ.pop(var, None)
    emulator = Emulator().start()
    try:
        world = AWS(emulator)
        world.client("s3").create_bucket(Bucket=BUCKET)
        yield world
    finally:
        emulator.stop()
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class Registry:
    root: Path
    db_uri: str
    config_path: Path

    @property
    def registry_uri(self) -> str:
        return f"steward+{self.db_uri}"

    def write_config(self, text: str) -> None:
        self.config_path.write_text(text)

    def env(self) -> dict[str, str]:
        return {
            "MLFLOW_TRACKING_URI": self.db_uri,
            "MLFLOW_REGISTRY_URI": self.registry_uri,
            "MLFLOW_STEWARD_CONFIG": str(self.config_path),
            "MLFLOW_STEWARD_ACTOR": "tester",
            "MLFLOW_STEWARD_HOME": str(self.root / "home"),
        }

    def runtime(self, name: str) -> dict[str, Any]:
        import sqlalchemy as sa

        engine = sa.create_engine(self.db_uri)
        try:
            with engine.connect() as conn:
                row = conn.execute(
                    sa.text("select runtime from steward_deployments where name = :n"), {"n": name}
                ).first()
        finally:
            engine.dispose()
        return json.loads(row[0]) if row and row[0] else {}


POLICIES = """\
policies:
  - use: require-signature
"""


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """``fraud`` v1 (x0 > 0) and v2 (the opposite), each with a baseline (x0, x1, x2 standard
    normal), ``@production`` on v1, registered through steward (their content digests recorded)."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    import mlflow_steward as steward
    from mlflow_steward.plugins.manager import reset_plugin_manager

    root = tmp_path_factory.mktemp("registry")
    reg = Registry(root, f"sqlite:///{root / 'mlflow.db'}", root / "steward.yaml")
    reg.write_config(POLICIES)
    saved = dict(os.environ)
    os.environ.update(reg.env())
    reset_plugin_manager()
    try:
        mlflow.set_tracking_uri(reg.db_uri)
        mlflow.set_registry_uri(reg.registry_uri)
        rng = np.random.default_rng(0)
        X = pd.DataFrame(rng.normal(size=(200, 3)), columns=COLUMNS)
        y = (X["x0"] > 0).astype(int)
        for labels in (y, 1 - y):
            model = LogisticRegression().fit(X, labels)
            with mlflow.start_run():
                logged = mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=infer_signature(X, model.predict(X)),
                    input_example=X.head(2),
                    # named, not inferred (MLflow loads the model in a new process: ~5 s each)
                    pip_requirements=mlflow.sklearn.get_default_pip_requirements(),
                )
                steward.log_baseline(X, labels, model.predict(X), model_info=logged)
            # Registered after the baseline: the digest recorded covers it.
            mlflow.register_model(logged.model_uri, "fraud")
        MlflowClient(reg.db_uri, reg.registry_uri).set_registered_model_alias(
            "fraud", "production", "1"
        )
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        os.environ.update(reg.env())  # set_tracking_uri(None) removes MLFLOW_TRACKING_URI
        yield reg
    finally:
        reset_plugin_manager()
        from mlflow_steward.records import db

        db.dispose_engines()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _fresh_plugin_manager() -> Iterator[None]:
    from mlflow_steward.plugins.manager import reset_plugin_manager

    reset_plugin_manager()
    yield
    reset_plugin_manager()
