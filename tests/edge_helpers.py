"""Helpers for the edge tests: a governed registry with two versions of a tiny model (v1 answers
x0 > 0, v2 the opposite; v1 has a baseline and is @production), and a static HTTP server process
for a channel folder."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlflow_steward.deployment.onprem.ports import free_port
from tests import model_requirements
from tests.mlflow_db import empty_mlflow_db

COLUMNS = ["x0", "x1", "x2"]
EXAMPLE = [[-0.5, 0.1, 0.2], [1.0, 0.3, -0.2]]


@dataclass(frozen=True)
class EdgeRegistry:
    root: Path
    db_uri: str
    config: Path

    @property
    def registry_uri(self) -> str:
        return f"steward+{self.db_uri}"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "MLFLOW_TRACKING_URI": self.db_uri,
                "MLFLOW_REGISTRY_URI": self.registry_uri,
                "MLFLOW_STEWARD_CONFIG": str(self.config),
                "MLFLOW_STEWARD_ACTOR": "tester",
                "MLFLOW_DISABLE_TELEMETRY": "true",
                **extra,
            }
        )
        return env

    def session(self):
        from mlflow_steward.config import load_config
        from mlflow_steward.lifecycle.session import StewardSession

        return StewardSession(registry_uri=self.registry_uri, config=load_config(str(self.config)))


def build_edge_registry(root: Path, v2_code: str | None = None) -> EdgeRegistry:
    """``beacon`` v1 (x0 > 0, with a baseline, @production) and v2 (the opposite), registered
    through steward's governed store so their content digests are recorded. ``v2_code``: v2 is
    instead this models-from-code pyfunc (its source), with v1's input example."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from mlflow_steward import log_baseline

    root.mkdir(parents=True, exist_ok=True)
    db_uri = empty_mlflow_db(root / "mlflow.db")
    config = root / "steward.yaml"
    config.write_text("policies: []\n")
    saved = {k: os.environ.get(k) for k in ("MLFLOW_STEWARD_CONFIG", "MLFLOW_TRACKING_URI")}
    os.environ["MLFLOW_STEWARD_CONFIG"] = str(config)
    mlflow.set_tracking_uri(db_uri)
    mlflow.set_registry_uri(f"steward+{db_uri}")
    try:
        rng = np.random.default_rng(0)
        X = pd.DataFrame(rng.normal(size=(80, 3)), columns=COLUMNS)
        y = (X["x0"] > 0).astype(int)
        example = pd.DataFrame(EXAMPLE, columns=COLUMNS)
        for i, labels in enumerate((y, 1 - y)):
            model = LogisticRegression().fit(X, labels)
            if i == 1 and v2_code is not None:
                code = root / "v2_model.py"
                code.write_text(v2_code)
                with mlflow.start_run():
                    info = mlflow.pyfunc.log_model(
                        name="model",
                        python_model=str(code),
                        input_example=example,
                        pip_requirements=model_requirements.pyfunc(),
                    )
                    mlflow.register_model(info.model_uri, "beacon")
                continue
            with mlflow.start_run():
                info = mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=infer_signature(X, model.predict(X)),
                    input_example=example,
                    pip_requirements=["scikit-learn", "numpy"],
                )
                if i == 0:  # before registering: the digest recorded then covers it
                    log_baseline(X, labels, model.predict(X), model_info=info)
                mlflow.register_model(info.model_uri, "beacon")
        MlflowClient(db_uri, db_uri).set_registered_model_alias("beacon", "production", "1")
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)  # leaves MLFLOW_REGISTRY_URI set
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return EdgeRegistry(root, db_uri, config)


@contextlib.contextmanager
def static_server(
    folder: Path, port: int | None = None, module: str = "http.server"
) -> Iterator[str]:
    """``python -m http.server`` (or ``module``, taking the same arguments) serving ``folder`` on
    ``port`` (default: a free one) of 127.0.0.1; yields its URL and stops the process
    afterwards."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, str(port), "--bind", "127.0.0.1", "-d", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"static server on {url} did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def shared_edge_registry(tmp_path_factory) -> EdgeRegistry:
    """:func:`build_edge_registry` once per test session (per xdist worker): the edge modules
    share it, each test leaving the registry as it found it (deployments and audit entries
    aside, which the tests select by name)."""
    root = tmp_path_factory.getbasetemp() / "edge-registry"
    ready = root / ".ready"
    if ready.is_file():
        return EdgeRegistry(root, f"sqlite:///{root / 'mlflow.db'}", root / "steward.yaml")
    registry = build_edge_registry(root)
    ready.touch()
    return registry


def beacon_bundles(registry: EdgeRegistry, root: Path) -> dict[str, Path]:
    """Bundles of beacon v1 and v2 from ``registry``, built into ``root``."""
    from mlflow_steward.deployment.edge.bundle import build_bundle

    return {
        version: build_bundle(
            tracking_uri=registry.db_uri,
            registry_uri=registry.db_uri,
            name="beacon",
            version=version,
            requested=f"models:/beacon/{version}",
            output=root / f"beacon-{version}.tar.gz",
        ).path
        for version in ("1", "2")
    }
