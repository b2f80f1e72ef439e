"""Every write attempt on the registry's REST routes ends on the audit log, also the ones MLflow
itself rejects before the governed store sees them (malformed JSON, a wrong method, a missing
field, basic-auth's 401/403): a probe of the server leaves a trace, not only the calls that made
it to a policy.
"""

from __future__ import annotations

import re
from typing import Any

from mlflow_steward.governance.engine import Decision, PolicyOutcome

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


def write_action(path: str, method: str) -> str | None:
    """The governed action a request to ``path`` attempts, or ``None`` for a read route."""
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
    body = request.get_json(silent=True, force=True)
    fields = dict(request.args.items())
    if isinstance(body, dict):
        fields.update({k: v for k, v in body.items() if isinstance(v, str | int)})
    return {k: str(v) for k, v in fields.items()}


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
