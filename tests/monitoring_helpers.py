"""Helpers for the monitoring tests: models trained with a baseline, data batches, and local
receivers for alerts (an HTTP webhook server and an aiosmtpd SMTP server on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd

from mlflow_steward.deployment.onprem.ports import free_port
from tests import model_requirements

COLUMNS = ["amount", "age", "score"]


def train(registry_uri: str, name: str = "fraud", seed: int = 0, governed: bool = False) -> str:
    """Log a model with ``log_baseline`` and register it (through steward with ``governed``, so
    its content digest is recorded); returns the version."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    import mlflow_steward as steward

    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(3000, 3)), columns=COLUMNS)
    y = (X["amount"] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    mlflow.set_tracking_uri(registry_uri)
    mlflow.set_registry_uri(f"steward+{registry_uri}" if governed else registry_uri)
    with mlflow.start_run():
        mlflow.log_metric("accuracy", 0.97)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X, model.predict(X)),
            input_example=X.head(2),
            pip_requirements=model_requirements.sklearn(),
        )
        steward.log_baseline(X, y, model.predict(X), model_info=info)
    return str(mlflow.register_model(info.model_uri, name).version)


def batch(rng: np.random.Generator, n: int = 600, shift: float = 0.0) -> pd.DataFrame:
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=COLUMNS)
    X["age"] += shift
    return X


@dataclass
class Webhook:
    """An HTTP server on 127.0.0.1 that records every POST (headers and body)."""

    status: int = 200
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def __enter__(self) -> Webhook:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.received.append((dict(self.headers.items()), body))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]


class Smtp:
    """An aiosmtpd server on 127.0.0.1 that keeps every message."""

    def __enter__(self) -> Smtp:
        from aiosmtpd.controller import Controller

        smtp = self
        self.messages: list[tuple[str, list[str], str]] = []

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                smtp.messages.append(
                    (envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode())
                )
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def log_served(log, request_id: str, frame: pd.DataFrame, predictions: list) -> None:
    """Record in a deployment's request ``log`` one request v1 served: ``frame`` in (as
    ``dataframe_split``), ``predictions`` out."""
    log.add(
        request_id=request_id,
        version="1",
        status=200,
        latency_ms=1.0,
        content_type="application/json",
        request=json.dumps(
            {"dataframe_split": frame.to_dict(orient="split", index=False)}
        ).encode(),
        response=json.dumps({"predictions": list(predictions)}).encode(),
    )
