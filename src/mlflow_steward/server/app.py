"""``mlflow server --app-name steward``: MLflow's server with steward's governance switched on.

The app factory runs in every server worker. It makes the server's registry store the governed
one (``steward+<backend>``), so REST (``/api/2.0``), the UI (``/ajax-api/2.0``) and every MLflow
client are decided by the same policies (from the server's ``steward.yaml``); it sets the actor of
each request from the configured identity source (see :mod:`mlflow_steward.server.identity`),
optionally under MLflow's basic-auth, and adds steward's approval endpoints
(``/api/2.0/steward/...``). It keeps no state in memory: everything lives in the database.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from mlflow_steward import _mlflow_adapter, compat
from mlflow_steward.records import db
from mlflow_steward.registry import governed_uri, inner_uri
from mlflow_steward.server import guard, identity

_logger = logging.getLogger(__name__)


def govern_registry_store() -> str:
    """Point this worker's registry store at ``steward+<registry or backend store URI>``."""
    backend_env, registry_env, _ = _mlflow_adapter.server_store_env()
    backend = os.environ.get(backend_env)
    registry = os.environ.get(registry_env) or backend
    if not registry:
        raise RuntimeError(
            "steward's server app found no backend store URI: start it with "
            "`mlflow server --app-name steward --backend-store-uri <database URI>`"
        )
    governed = governed_uri(registry)  # refuses file stores and remote registries, clearly
    os.environ[registry_env] = governed
    # Model facts (source runs, logged models) are read from the server's own tracking store.
    os.environ["MLFLOW_TRACKING_URI"] = backend or inner_uri(governed)
    return governed


def create_app() -> Any:
    """The app factory named by the ``mlflow.app`` entry point ``steward``."""
    from mlflow_steward.governance.governor import _request_actor, _request_audit
    from mlflow_steward.server import reviewers
    from mlflow_steward.server.api import register_routes

    mode = identity.auth_mode()
    registry_uri = govern_registry_store()
    compat.require_tested_mlflow("steward's server app", registry_uri)
    # Refuse to start on steward tables of an older release (naming `steward db upgrade`),
    # instead of failing on the first governed request.
    db.get_engine(registry_uri)
    flask_app = _mlflow_adapter.server_flask_app()
    served = _mlflow_adapter.server_enable_basic_auth(flask_app) if mode == "basic" else None
    resolve = identity.actor_resolver(mode)
    trusted = identity.trusted_header() if mode == "trusted-header" else None
    basic_only = mode == "basic" and _mlflow_adapter.server_auth_uses_basic_credentials()

    # First of all before_request hooks (basic auth's included, which reads the body): malformed
    # input on steward's routes is answered here, before anything parses or records it.
    flask_app.before_request_funcs.setdefault(None, []).insert(0, _guard(trusted, basic_only))

    # Registered after basic-auth's hook, so it runs after authentication.
    @flask_app.before_request
    def _set_actor() -> None:
        from flask import g, request

        g.steward_tokens = (_request_actor.set(resolve(request)), _request_audit.set([]))

    @flask_app.before_request
    def _govern_webhook_test() -> Any:
        # MLflow's REST handler sends the test itself (not through the registry store), so the
        # governed decision is taken here, after authentication, before it sends anything.
        from flask import request
        from mlflow.exceptions import MlflowException

        from mlflow_steward.server import attempts
        from mlflow_steward.server.api import session

        if request.method != "POST" or attempts.write_action(request.path, "POST") != (
            "test_webhook"
        ):
            return None
        webhook_id = request.path.rstrip("/").split("/")[-2]
        try:
            session().store.authorize_test_webhook(webhook_id)
        except MlflowException as exc:
            status = exc.get_http_status_code()
            return _json_error(status if status < 500 else 403, exc.message, exc.error_code)
        return None

    @flask_app.after_request
    def _after(response: Any) -> Any:
        from flask import g, request

        if not guard.governed_route(request.path):
            return response
        _audit_rejected_attempt(request, response, g.get("steward_tokens") is not None)
        return _as_json_error(response)

    @flask_app.teardown_request
    def _reset_request_state(_exc: BaseException | None) -> None:
        from flask import g

        tokens = g.pop("steward_tokens", None)
        if tokens is not None:
            _request_actor.reset(tokens[0])
            _request_audit.reset(tokens[1])

    for client_error in guard.CLIENT_INPUT_ERRORS:
        flask_app.register_error_handler(client_error, _client_errors_are_400)
    register_routes(flask_app, basic_auth=mode == "basic")
    reviewers.register(flask_app, basic_auth=mode == "basic")  # the reviewers' page, /steward/
    _logger.info("steward governs %s (identity: %s)", registry_uri, mode)
    if served is None:
        uvicorn = _mlflow_adapter.server_runs_under_uvicorn()
        served = _mlflow_adapter.server_fastapi_app(flask_app) if uvicorn else flask_app
    if trusted is not None and hasattr(served, "add_middleware"):
        # Under uvicorn: the raw header list, before Starlette folds spellings together.
        served.add_middleware(identity.TrustedHeaderGuard, header=trusted)
    return served


def _json_error(status: int, message: str, code: str | None = None) -> Any:
    from flask import jsonify

    response = jsonify({"error_code": code or guard.error_code_for(status), "message": message})
    response.status_code = status
    return response


def _guard(trusted: str | None, basic_only: bool) -> Any:
    def steward_guard() -> Any:
        from flask import request
        from werkzeug.exceptions import RequestEntityTooLarge

        if trusted is not None:
            problem = identity.wsgi_header_problem(request, trusted)
            if problem:
                return _json_error(400, problem)
        if not guard.governed_route(request.path):
            return None
        if basic_only and request.headers.get("Authorization"):
            auth = request.authorization
            if auth is None or auth.type != "basic" or not auth.username or auth.password is None:
                # MLflow's Basic-auth function passes a Digest header's missing password on to
                # its password check, which fails with a 500: answer what it means instead.
                response = _json_error(
                    401, "send Basic credentials (user name and password)", "UNAUTHENTICATED"
                )
                response.headers["WWW-Authenticate"] = 'Basic realm="mlflow"'
                return response
        limit = guard.max_body()
        request.max_content_length = limit  # also bounds a chunked body as it is read
        try:
            if request.content_length is not None and request.content_length > limit:
                raise RequestEntityTooLarge()
            body = guard.parse_body(request.get_data(cache=True))
            guard.check_fields(request.path, {**request.args, **(body or {})})
        except RequestEntityTooLarge:
            return _json_error(413, f"the request body is larger than {limit} bytes")
        except guard.Refusal as refusal:
            return _json_error(refusal.status, str(refusal), refusal.code)
        return None

    return steward_guard


def _audit_rejected_attempt(request: Any, response: Any, authenticated: bool) -> None:
    """Audit a write attempt refused before governance (rate-limited per client)."""
    from mlflow_steward.governance.governor import _request_actor, _request_audit
    from mlflow_steward.server import attempts
    from mlflow_steward.server.api import session

    if _request_audit.get() or response.status_code < 400:
        return  # decided and audited by governance, or not refused
    if not attempts.write_action(request.path, request.method):
        return
    # Only a request that went through authentication has a verified actor; a name in a
    # request refused before that (401, a malformed body) is a claim, not an identity.
    actor = (_request_actor.get() if authenticated else None) or identity.ANONYMOUS
    client = request.remote_addr or "?"
    try:
        governor = session().governor
        for summary in attempts.LIMITER.due():
            attempts.record_suppressed(governor, summary)
        admitted, first = attempts.LIMITER.admit(client, request.path)
        if first:
            _logger.warning(
                "more than %d rejected write attempts from %s this minute: counting the rest "
                "into one audit entry",
                attempts.LIMITER.per_client,
                client,
            )
        if admitted:
            attempts.record_rejected_attempt(governor, request, response, actor)
    except Exception:
        _logger.exception("could not audit a rejected write attempt on %s", request.path)


def _as_json_error(response: Any) -> Any:
    """An error from basic auth, Flask or MLflow that is not JSON becomes JSON with an MLflow
    error code, so every client shows the reason (headers such as WWW-Authenticate are kept)."""
    if response.status_code < 400 or response.is_json:
        return response
    text = response.get_data(as_text=True) if not response.is_streamed else ""
    message = _plain(text) or response.status
    replaced = _json_error(response.status_code, message)
    for name, value in response.headers.items():
        if name.lower() not in ("content-type", "content-length"):
            replaced.headers[name] = value
    return replaced


def _plain(text: str) -> str:
    import re

    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)).strip()[:500]


def _client_errors_are_400(exc: Exception) -> Any:
    """An exception escaping an MLflow handler on steward's routes: 400 when the request's
    shape caused it (see :data:`guard.CLIENT_INPUT_ERRORS`), else MLflow's usual 500."""
    from flask import request
    from werkzeug.exceptions import InternalServerError

    if guard.governed_route(request.path):
        _logger.info("malformed request on %s: %r", request.path, exc)
        return _json_error(400, f"malformed request: {type(exc).__name__}: {exc}"[:500])
    # Elsewhere, what Flask does without a handler: log it, answer 500.
    _logger.error("Exception on %s [%s]", request.path, request.method, exc_info=exc)
    return InternalServerError(original_exception=exc)
