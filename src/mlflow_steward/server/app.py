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

from mlflow_steward import _mlflow_adapter, db
from mlflow_steward.registry import STEWARD_PREFIX, governed_uri
from mlflow_steward.server import identity

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
    os.environ["MLFLOW_TRACKING_URI"] = backend or governed.removeprefix(STEWARD_PREFIX)
    return governed


def create_app() -> Any:
    """The app factory named by the ``mlflow.app`` entry point ``steward``."""
    from mlflow_steward.governance.governor import _request_actor, _request_audit
    from mlflow_steward.server.api import register_routes, session
    from mlflow_steward.server.attempts import record_rejected_attempt, write_action

    mode = identity.auth_mode()
    registry_uri = govern_registry_store()
    # Refuse to start on steward tables of an older release (naming `steward db upgrade`),
    # instead of failing on the first governed request.
    db.get_engine(registry_uri)
    flask_app = _mlflow_adapter.server_flask_app()
    served = _mlflow_adapter.server_enable_basic_auth(flask_app) if mode == "basic" else None
    resolve = identity.actor_resolver(mode)

    # Registered after basic-auth's hook, so it runs after authentication.
    @flask_app.before_request
    def _set_actor() -> None:
        from flask import g, request

        g.steward_tokens = (_request_actor.set(resolve(request)), _request_audit.set([]))

    @flask_app.after_request
    def _audit_rejected_attempt(response: Any) -> Any:
        from flask import request

        recorded = _request_audit.get()
        if not recorded and write_action(request.path, request.method):
            # Also when basic-auth answered 401/403 before our before_request ran; after a 401
            # the name in the request was not verified, so it is not recorded as the actor.
            actor = _request_actor.get() or (
                identity.ANONYMOUS if response.status_code == 401 else resolve(request)
            )
            try:
                record_rejected_attempt(session().governor, request, response, actor)
            except Exception:
                _logger.exception("could not audit a rejected write attempt on %s", request.path)
        return response

    @flask_app.teardown_request
    def _reset_request_state(_exc: BaseException | None) -> None:
        from flask import g

        tokens = g.pop("steward_tokens", None)
        if tokens is not None:
            _request_actor.reset(tokens[0])
            _request_audit.reset(tokens[1])

    register_routes(flask_app, basic_auth=mode == "basic")
    _logger.info("steward governs %s (identity: %s)", registry_uri, mode)
    if served is None:
        uvicorn = _mlflow_adapter.server_runs_under_uvicorn()
        served = _mlflow_adapter.server_fastapi_app(flask_app) if uvicorn else flask_app
    return served
