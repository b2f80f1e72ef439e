"""Serving a model on a device: MLflow's scoring protocol on a threaded HTTP server.

Routes (those of ``mlflow models serve``, plus the agent's status):

- ``POST /invocations``: MLflow's own request decoding and response encoding
  (``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``; CSV and Parquet by
  content type), through :func:`mlflow_steward._mlflow_adapter.score_request`; the answer names
  the version that made it in ``X-Steward-Model-Version``;
- ``GET /ping`` and ``GET /health``: 200 while a model is loaded, 503 before;
- ``GET /version``: MLflow's version;
- ``GET /status``: what the agent reports (JSON).

The model served is one reference (:class:`Serving`), read once per request and replaced as a
whole by :meth:`ModelServer.swap`: a request in flight finishes on the model it started with,
the next one goes to the new model, and none waits for a lock.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_logger = logging.getLogger("mlflow_steward.edge.agent")

VERSION_HEADER = "X-Steward-Model-Version"
JSON = "application/json"


@dataclass(frozen=True)
class Serving:
    """A loaded model and what it was installed as."""

    model: Any
    name: str
    version: str
    release: int

    @functools.cached_property
    def input_schema(self) -> Any:
        return self.model.metadata.get_input_schema()

    @functools.cached_property
    def key(self) -> str:
        """``NAME/VERSION``, as the statistics file what this model answered."""
        return f"{self.name}/{self.version}"

    @property
    def runtime(self) -> str:
        """``onnxruntime`` for a bundle's ONNX model, else ``pyfunc``."""
        return str(getattr(self.model, "runtime", "pyfunc"))

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "version": self.version, "release": self.release}


class _Recording:
    """The served model for one request: MLflow's scoring function calls ``predict`` with the
    input it decoded, which is kept for the statistics."""

    __slots__ = ("_model", "data", "metadata")

    def __init__(self, model: Any) -> None:
        self._model = model
        self.metadata = model.metadata
        self.data: Any = None

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        self.data = data
        return self._model.predict(data, params=params)


def _frame(data: Any) -> Any:
    """The decoded input as a pandas DataFrame (``None`` when it is not a table)."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    try:
        frame = pd.DataFrame(data)
    except (ValueError, TypeError):
        return None
    return frame if frame.ndim == 2 else None


def answer(model: Any, input_schema: Any, body: bytes, content_type: str) -> tuple[int, bytes, str]:
    """``(status, body, mimetype)`` of ``model`` answering one ``POST /invocations``."""
    from mlflow_steward._mlflow_adapter import score_request

    try:
        status, text, mimetype = score_request(body, content_type, model, input_schema)
    except Exception as exc:  # a model that raises past MLflow's own handling
        _logger.exception("prediction failed")
        message = {"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"}
        return 500, json.dumps(message).encode(), JSON
    return status, text.encode(), mimetype


class ModelServer:
    """The device's scoring endpoint. ``status`` builds the ``/status`` answer; ``statistics``
    (optional) gets ``observe(frame, "NAME/VERSION")`` after each successful prediction, with
    the input as the model got it (held by reference: nothing changes it afterwards)."""

    def __init__(self, status: Callable[[], dict[str, Any]], statistics: Any = None) -> None:
        self.serving: Serving | None = None
        self._status = status
        self.statistics = statistics
        self.statistics_errors = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def swap(self, serving: Serving | None) -> Serving | None:
        """Serve ``serving`` from the next request on; returns what was served before."""
        previous, self.serving = self.serving, serving
        return previous

    def score(self, body: bytes, content_type: str) -> tuple[int, bytes, str, Serving | None]:
        """``(status, body, mimetype, what answered)`` of one ``POST /invocations``."""
        serving = self.serving  # one read: a swap meanwhile does not touch this request
        if serving is None:
            message = {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "no model installed"}
            return 503, json.dumps(message).encode(), JSON, None
        recording = _Recording(serving.model)
        status, payload, mimetype = answer(recording, serving.input_schema, body, content_type)
        if status == 200 and self.statistics is not None and recording.data is not None:
            self._observe(recording.data, serving.key)
        return status, payload, mimetype, serving

    def _observe(self, data: Any, version: str) -> None:
        try:
            frame = _frame(data)
            if frame is not None:
                self.statistics.observe(frame, version)
        except Exception:  # statistics never fail a prediction
            self.statistics_errors += 1
            if self.statistics_errors == 1:
                _logger.exception("statistics failed to observe a request (reported once)")

    # -- the HTTP server -------------------------------------------------------------------------

    def start(self, host: str, port: int) -> None:
        """Listen on ``host``:``port`` and serve in a background thread."""
        handler = type("Handler", (_Handler,), {"app": self})
        self._httpd = _Server((host, port), handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="edge-agent-http", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    def stop(self) -> None:
        """Stop taking connections (requests being answered finish)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Clients that open many connections at once (a pool) must not find the backlog full.
    request_queue_size = 256


class _Handler(BaseHTTPRequestHandler):
    app: ModelServer
    protocol_version = "HTTP/1.1"  # keep-alive: a client reuses its connection
    server_version = "steward-edge-agent"
    disable_nagle_algorithm = True  # headers and body are two writes
    timeout = 120  # an idle kept-alive connection is closed after this

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(
        self, status: int, body: bytes, mimetype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", mimetype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._answer(status, json.dumps(payload, default=str).encode(), JSON)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/ping", "/health"):
            if self.app.serving is None:
                self._json(503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "no model"})
            else:
                self._answer(200, b"\n", JSON)
        elif path == "/status":
            self._json(200, self.app._status())
        elif path == "/version":
            import mlflow

            self._answer(200, mlflow.__version__.encode(), JSON)
        else:
            self._json(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"no route {path}"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._json(411, {"error_code": "BAD_REQUEST", "message": "send a Content-Length"})
            return
        body = self.rfile.read(int(length))
        if path != "/invocations":
            self._json(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"no route {path}"})
            return
        status, payload, mimetype, serving = self.app.score(
            body, self.headers.get("Content-Type") or ""
        )
        headers = {VERSION_HEADER: serving.version} if serving is not None else {}
        self._answer(status, payload, mimetype, headers)
