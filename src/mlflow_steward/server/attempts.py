"""Every write attempt on the registry's REST routes ends on the audit log, also the ones MLflow
itself rejects before the governed store sees them (malformed JSON, a wrong method, a missing
field, basic-auth's 401/403): a probe of the server leaves a trace, not only the calls that made
it to a policy.

An unauthenticated client must not be able to grow the log without bound by sending bad requests,
so rejected attempts are rate-limited per client, in each worker's memory (see
:class:`AttemptLimiter`): past a few entries per minute, further attempts from that client are
counted, and the count is written as one ``rejected_attempts`` entry when the window ends.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow_steward.plugins.events import Decision, PolicyOutcome

#: (collection, operation) of the registry's REST write routes -> the governed action.
WRITE_ROUTES: dict[tuple[str, str], str] = {
    ("registered-models", "create"): "create_registered_model",
    ("registered-models", "rename"): "rename_registered_model",
    ("registered-models", "update"): "update_registered_model",
    ("registered-models", "delete"): "delete_registered_model",
    ("registered-models", "set-tag"): "set_registered_model_tag",
    ("registered-models", "delete-tag"): "delete_registered_model_tag",
    ("registered-models", "alias"): "set_alias",  # DELETE: delete_alias
    ("model-versions", "create"): "create_model_version",
    ("model-versions", "update"): "update_model_version",
    ("model-versions", "delete"): "delete_model_version",
    ("model-versions", "transition-stage"): "transition_stage",
    ("model-versions", "set-tag"): "set_model_version_tag",
    ("model-versions", "delete-tag"): "delete_model_version_tag",
}
_ROUTE = re.compile(
    r"/(?:ajax-)?api/2\.0/mlflow/(?:databricks/)?(registered-models|model-versions)/([a-z-]+)/*$"
)
_WEBHOOK_ROUTE = re.compile(r"/(?:ajax-)?api/2\.0/mlflow/webhooks(/[^/]+)?(/test)?/*$")
#: Audit action of the entry that sums up a client's attempts past the limit.
SUPPRESSED_ACTION = "rejected_attempts"


def write_action(path: str, method: str) -> str | None:
    """The governed action a request to ``path`` attempts, or ``None`` for a read route."""
    hook = _WEBHOOK_ROUTE.search(path)
    if hook:
        if hook.group(2):
            return "test_webhook" if method == "POST" else None
        if hook.group(1):
            return {"PATCH": "update_webhook", "DELETE": "delete_webhook"}.get(method)
        return "create_webhook" if method == "POST" else None
    match = _ROUTE.search(path)
    if not match:
        return None
    action = WRITE_ROUTES.get((match.group(1), match.group(2)))
    if action == "set_alias" and method == "GET":
        return None  # get_model_version_by_alias
    if action == "set_alias" and method == "DELETE":
        return "delete_alias"
    return action


def _fields(request: Any) -> dict[str, str]:
    fields = dict(request.args.items())
    try:
        body = request.get_json(silent=True, force=True)
    except RecursionError:  # too deep for the decoder: it names nothing
        body = None
    if isinstance(body, dict):
        fields.update({k: v for k, v in body.items() if isinstance(v, str | int)})
    return {k: str(v) for k, v in fields.items()}


@dataclass
class _Window:
    start: float
    recorded: int = 0
    suppressed: int = 0
    first_suppressed: str = ""
    routes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Suppressed:
    """Attempts of one client that were counted instead of audited one by one."""

    client: str
    count: int
    since: str
    routes: dict[str, int]


class AttemptLimiter:
    """Per-client limit on audit entries for rejected attempts, per worker, in memory.

    In each ``window`` seconds a client (its address) gets ``per_client`` entries of its own;
    further attempts are counted per route and summed up in one entry when its window ends
    (written with the next rejected attempt of any client after that). At most ``max_clients``
    clients are tracked: the longest-tracked one is summed up early to make room, so memory stays
    bounded whatever the number of addresses. State is per worker and lost on restart: with W
    workers a client gets at most ``W * per_client`` entries per window; a worker stopped
    mid-window loses its pending count (it also went to the server log when counting began).
    """

    def __init__(
        self, *, per_client: int = 10, window: float = 60.0, max_clients: int = 4096
    ) -> None:
        self.per_client = per_client
        self.window = window
        self.max_clients = max_clients
        self._lock = threading.Lock()
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def admit(self, client: str, route: str, now: float | None = None) -> tuple[bool, bool]:
        """Whether this attempt gets an entry of its own, and whether it is the first one of its
        client's window to be counted instead (worth a line in the server log)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            window = self._windows.get(client)
            if window is None:
                window = self._windows[client] = _Window(now)
            if window.recorded < self.per_client:
                window.recorded += 1
                return True, False
            window.suppressed += 1
            window.routes[route] = window.routes.get(route, 0) + 1
            if window.suppressed == 1:
                window.first_suppressed = _utc_now()
            return False, window.suppressed == 1

    def due(self, now: float | None = None) -> list[Suppressed]:
        """The counts to write now (windows that ended, or tracked clients beyond the bound);
        each is returned once."""
        now = time.monotonic() if now is None else now
        out: list[Suppressed] = []
        with self._lock:
            for client in list(self._windows):
                window = self._windows[client]
                over = len(self._windows) > self.max_clients
                if not over and now - window.start < self.window:
                    continue
                del self._windows[client]
                if window.suppressed:
                    out.append(
                        Suppressed(
                            client, window.suppressed, window.first_suppressed, window.routes
                        )
                    )
        return out


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: This worker's limiter (see :class:`AttemptLimiter`).
LIMITER = AttemptLimiter()


def record_suppressed(governor: Any, summary: Suppressed) -> None:
    """One audit entry for the attempts of one client that were counted, not audited singly."""
    event = governor.event(
        SUPPRESSED_ACTION,
        "*",
        actor="anonymous",
        context={
            "client": summary.client,
            "count": summary.count,
            "since": summary.since,
            "routes": dict(sorted(summary.routes.items())[:20]),
        },
    )
    reason = (
        f"{summary.count} more write attempts from {summary.client} rejected before governance "
        f"since {summary.since}, counted instead of audited one by one (rate limit)"
    )
    outcome = PolicyOutcome("mlflow-server", "mlflow-server", "mlflow", False, reason)
    governor.record(event, Decision(event, (outcome,)), f"rejected: {summary.count} attempts")


def _error(response: Any) -> tuple[str | None, str]:
    """The response's MLflow error code (if any) and message."""
    try:
        data = response.get_json(silent=True)
    except Exception:  # a streamed or non-JSON body
        data = None
    if isinstance(data, dict) and data.get("message"):
        return data.get("error_code"), str(data["message"])[:500]
    return None, response.status


def record_rejected_attempt(governor: Any, request: Any, response: Any, actor: str) -> None:
    """Audit a write attempt that failed (HTTP 4xx) without reaching a governed decision."""
    action = write_action(request.path, request.method)
    if action is None or response.status_code < 400:
        return
    code, message = _error(response)
    if action == "create_registered_model" and code == "RESOURCE_ALREADY_EXISTS":
        # mlflow.register_model creates the model first and expects this answer when it exists:
        # ordinary control flow, not an attempt to get around anything.
        return
    fields = _fields(request)
    event = governor.event(
        action,
        fields.get("name", "?"),
        version=fields.get("version"),
        alias=fields.get("alias"),
        actor=actor,
        context={"http": f"{request.method} {request.path} -> {response.status_code}"},
    )
    reason = f"rejected by the MLflow server before governance: {message}"
    outcome = PolicyOutcome("mlflow-server", "mlflow-server", "mlflow", False, reason)
    governor.record(event, Decision(event, (outcome,)), f"rejected: HTTP {response.status_code}")
