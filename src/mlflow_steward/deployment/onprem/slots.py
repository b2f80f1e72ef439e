"""A slot of the on-prem gateway: one MLflow scoring-server process serving one version, with
its request and error counts, and how its answers are classified (a model error counts against the
version; a client's bad input does not)."""

from __future__ import annotations

import collections
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: MLflow's scoring server answers 400 both for bad input and when the model itself raises; only
#: the second counts against a version.
_MODEL_ERROR = b"unexpected error while evaluating the model"


def is_model_error(status: int, payload: bytes) -> bool:
    """A 5xx, or the 400 MLflow's scoring server sends when the model raised."""
    return status >= 500 or (status == 400 and _MODEL_ERROR in payload)


def scoring_error(body: str) -> str:
    """The message of a scoring-server error, with the exception the model raised."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:300]
    message = str(data.get("message", ""))[:300]
    trace = [line for line in str(data.get("stack_trace", "")).strip().splitlines() if line]
    return f"{message} (the model raised {trace[-1].strip()})" if trace else message


class SlotFailed(Exception):
    """A version could not start or failed its health gate; the message says why."""


@dataclass
class Slot:
    """One scoring-server process serving one version."""

    version: str
    model_path: str
    port: int
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    inflight: int = 0
    requests: int = 0
    errors: int = 0
    window: collections.deque = field(default_factory=collections.deque)  # (t, ok)
    started: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def note(self, ok: bool, now: float, window: float) -> None:
        self.requests += 1
        if not ok:
            self.errors += 1
        self.window.append((now, ok))
        while self.window and self.window[0][0] < now - window:
            self.window.popleft()

    def error_rate(self, now: float, window: float) -> tuple[float, int]:
        while self.window and self.window[0][0] < now - window:
            self.window.popleft()
        n = len(self.window)
        bad = sum(1 for _, ok in self.window if not ok)
        return (bad / n if n else 0.0), n

    def describe(self, now: float, window: float) -> dict[str, Any]:
        rate, n = self.error_rate(now, window)
        return {
            "version": self.version,
            "port": self.port,
            "pid": self.process.pid if self.process else None,
            "requests": self.requests,
            "errors": self.errors,
            "inflight": self.inflight,
            "error_rate": round(rate, 4),
            "window_requests": n,
        }
