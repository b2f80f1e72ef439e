"""steward's REST endpoints on the governed server: approval requests, approvals, rejections.

``POST /api/2.0/steward/approvals/request|approve|reject`` with ``{"name", "version", "alias",
"comment"}`` records a review as the request's authenticated actor (a governed, audited action);
``GET /api/2.0/steward/approvals?name=NAME`` lists recent reviews;
``GET /api/2.0/steward/deployments?name=NAME`` lists the deployments of registered model ``NAME``
(every target, as recorded in the registry database) with their history. The same routes exist under
``/ajax-api/2.0/``. Errors are JSON (``error_code``, ``message``): 400 for a malformed request,
403 for a refusal, 404 for an unknown version.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from mlflow_steward import _mlflow_adapter
from mlflow_steward.errors import InvalidVersion, LifecycleError, RegistryURIError
from mlflow_steward.plugins.events import REVIEW_VERDICTS, REVIEWED_ACTIONS
from mlflow_steward.registry import canonical_version

PREFIXES = ("/api/2.0/steward", "/ajax-api/2.0/steward")


class BadRequest(Exception):
    """A malformed steward API request (HTTP 400)."""


def _json_error(status: int, code: str, message: str) -> Any:
    from flask import jsonify

    response = jsonify({"error_code": code, "message": message})
    response.status_code = status
    return response


@functools.cache
def session() -> Any:
    """One session per worker: the governed store and configuration (state lives in the DB)."""
    from mlflow_steward.lifecycle.session import StewardSession

    registry_env = _mlflow_adapter.server_store_env()[1]
    return StewardSession(registry_uri=os.environ[registry_env])


def _body() -> dict[str, Any]:
    from flask import request

    if not request.is_json:
        raise BadRequest("send a JSON body with Content-Type: application/json")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # the server's guard refuses such bodies first; this is the backstop
        body = None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _field(body: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise BadRequest(f"missing field {key!r}")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRequest(f"field {key!r} must be a string")
    return str(value)


def error_status(exc: Exception) -> tuple[int, str, str] | None:
    """The HTTP status, MLflow error code and message that a refused steward request answers
    with, or ``None`` for an exception that is not a refusal (the REST API and the reviewers'
    page answer alike)."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, BadRequest):
        return 400, "INVALID_PARAMETER_VALUE", str(exc)
    if isinstance(exc, LifecycleError):
        return 404, "RESOURCE_DOES_NOT_EXIST", str(exc)
    if isinstance(exc, RegistryURIError):  # a name or version no models:/ URI can carry
        return 400, "INVALID_PARAMETER_VALUE", str(exc)
    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()
        return (status if status < 500 else 400), exc.error_code, exc.message
    return None


def _handled(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return view(*args, **kwargs)
        except (BadRequest, LifecycleError, RegistryURIError, MlflowException) as exc:
            status, code, message = error_status(exc) or (400, "INVALID_PARAMETER_VALUE", "")
            return _json_error(status, code, message)

    return wrapper


def review_request(verdict: str, body: dict[str, Any]) -> Any:
    """Record the review ``verdict`` described by ``body`` (``name``, ``version``, ``alias``,
    optional ``comment`` and ``action``) as the request's actor: the one code path of the REST
    endpoints and the reviewers' page. Returns the governed :class:`Decision`; raises
    :class:`BadRequest`, ``LifecycleError`` or a refusal (``MlflowException``)."""
    name, version, alias = (_field(body, k) for k in ("name", "version", "alias"))
    comment = _field(body, "comment", required=False)
    action = _field(body, "action", required=False) or "set_alias"
    if action not in REVIEWED_ACTIONS:
        raise BadRequest(f"'action' must be one of {', '.join(REVIEWED_ACTIONS)}")
    try:
        version = canonical_version(version)
    except InvalidVersion as exc:
        raise BadRequest(str(exc)) from None
    return session().review(
        f"models:/{name}/{version}",
        alias=alias,
        verdict=verdict,
        comment=comment,
        action=action,
    )


def _review(verdict: str) -> Callable[[], Any]:
    @_handled
    def view() -> Any:
        from flask import jsonify

        decision = review_request(verdict, _body())
        return jsonify({"decision": decision.to_dict()})

    view.__name__ = f"steward_{verdict}"
    return view


@_handled
def _list_reviews() -> Any:
    from flask import jsonify, request

    name = request.args.get("name") or None
    reviews = session().reviews(model=name)
    return jsonify({"reviews": [r.to_dict() for r in reviews]})


@_handled
def _list_deployments() -> Any:
    from flask import jsonify, request

    from mlflow_steward.records.deployments import DeploymentStore

    name = request.args.get("name") or None
    governor = session().governor
    store = DeploymentStore(governor.db_engine, governor.workspace())  # the request's workspace
    found = [d for d in store.list() if name is None or d.model == name]
    return jsonify(
        {
            "deployments": [
                {**d.to_dict(), "history": [s.to_dict() for s in store.history(d.name)]}
                for d in found
            ]
        }
    )


def register_routes(flask_app: Any, *, basic_auth: bool = False) -> None:
    """Add steward's endpoints; under basic-auth, users who may read the model may call them."""
    if basic_auth:
        _mlflow_adapter.server_authorize_with_model_read(
            [(f"{p}/approvals/{v}", "POST") for p in PREFIXES for v in REVIEW_VERDICTS]
            + [(f"{p}/approvals", "GET") for p in PREFIXES]
            + [(f"{p}/deployments", "GET") for p in PREFIXES]
        )
    for prefix in PREFIXES:
        for verdict in REVIEW_VERDICTS:
            flask_app.add_url_rule(
                f"{prefix}/approvals/{verdict}",
                endpoint=f"{prefix}-{verdict}",
                view_func=_review(verdict),
                methods=["POST"],
            )
        flask_app.add_url_rule(
            f"{prefix}/approvals",
            endpoint=f"{prefix}-list",
            view_func=_list_reviews,
            methods=["GET"],
        )
        flask_app.add_url_rule(
            f"{prefix}/deployments",
            endpoint=f"{prefix}-deployments",
            view_func=_list_deployments,
            methods=["GET"],
        )
