"""Helpers for the deployment tests: a registry with good and broken versions, and a load of
concurrent clients against a deployment's endpoint."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests import model_requirements
from tests.mlflow_db import empty_mlflow_db

MODELS = Path(__file__).parent / "deploy_models"
COLUMNS = ["x0", "x1", "x2"]


def frame(rows: list[list[float]]):
    import pandas as pd

    return pd.DataFrame(rows, columns=COLUMNS)


#: The health-check input example: two rows with x0 <= 0 (the flaky model answers batches of 2).
EXAMPLE = [[-0.5, 0.1, 0.2], [-1.0, 0.3, -0.2]]
#: What the load sends: three rows, so the flaky model fails on it.
BATCH = [[1.5, 0.0, 0.0], [-1.5, 0.0, 0.0], [0.7, 0.2, 0.1]]


def processes_naming(*parts: str) -> list[int]:
    """Live processes (this one aside) whose command line (arguments joined by NUL) contains
    every one of ``parts``."""
    wanted = [part.encode() for part in parts]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if all(part in cmdline for part in wanted):
            found.append(int(entry.name))
    return found


def build_registry(db_path: Path) -> str:
    """``fraud`` v1 (x0 > 0), v2 (the opposite), v3 fails to load, v4 fails its health check,
    v5 answers its input example but fails on larger batches, v6 takes 3 s on rows with x0 above
    100. ``@production`` is v1."""
    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    uri = f"sqlite:///{db_path}" if db_path.exists() else empty_mlflow_db(db_path)
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        rng = np.random.default_rng(0)
        X = frame(rng.normal(size=(80, 3)).tolist())
        y = (X["x0"] > 0).astype(int)
        example = frame(EXAMPLE)
        for labels in (y, 1 - y):
            model = LogisticRegression().fit(X, labels)
            with mlflow.start_run():
                mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=infer_signature(X, model.predict(X)),
                    input_example=example,
                    registered_model_name="fraud",
                    pip_requirements=model_requirements.sklearn(),
                )
        for code in ("fails_to_load", "fails_health", "flaky", "slow"):
            with mlflow.start_run():
                mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(MODELS / f"{code}.py"),
                    input_example=example,
                    registered_model_name="fraud",
                    pip_requirements=model_requirements.pyfunc(),
                )
        MlflowClient(uri, uri).set_registered_model_alias("fraud", "production", "1")
    finally:
        mlflow.set_tracking_uri(None)
        if previous is not None:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    return uri


def expected(version: str, rows: list[list[float]]) -> list[int]:
    positive = [int(r[0] > 0) for r in rows]
    return positive if version == "1" else [1 - p for p in positive]


@dataclass
class Load:
    """``clients`` threads posting ``BATCH`` to ``endpoint`` until stopped."""

    endpoint: str
    clients: int = 4
    rows: list[list[float]] = field(default_factory=lambda: BATCH)
    failures: list[str] = field(default_factory=list)
    # (time the request was sent, version header, predictions)
    seen: list[tuple[float, str, list]] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.clients)
        ]
        self._lock = threading.Lock()

    def _run(self) -> None:
        import requests

        body = {"dataframe_split": {"columns": COLUMNS, "data": self.rows}}
        with requests.Session() as session:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    r = session.post(f"{self.endpoint}/invocations", json=body, timeout=30)
                except requests.RequestException as exc:
                    with self._lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with self._lock:
                    self.statuses[r.status_code] += 1
                    if r.status_code != 200:
                        self.failures.append(f"HTTP {r.status_code}: {r.text[:200]}")
                    else:
                        self.seen.append(
                            (
                                sent,
                                r.headers.get("X-Steward-Model-Version"),
                                r.json()["predictions"],
                            )
                        )

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def versions(self) -> list[str]:
        """Versions in the order requests were sent, consecutive repeats collapsed."""
        out: list[str] = []
        for _, version, _ in sorted(self.seen):
            if not out or out[-1] != version:
                out.append(version)
        return out

    def versions_between(self, start: float, end: float) -> set[str]:
        return {version for sent, version, _ in self.seen if start <= sent < end}

    def wait_for(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        start = len(self.seen) + len(self.failures)
        while len(self.seen) + len(self.failures) < start + n and time.monotonic() < deadline:
            time.sleep(0.05)
