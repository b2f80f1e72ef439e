"""Every use of a private MLflow API lives here, so that an MLflow upgrade breaks one module.

``tests/test_mlflow_adapter.py`` exercises each function against the installed MLflow and fails
loudly when one of these internals moves or changes shape.
"""

from __future__ import annotations

import inspect
import os
from typing import Any
from urllib.parse import urlparse


def registry_store_builder(store_uri: str) -> Any:
    """The builder MLflow's registry-store registry uses for ``store_uri``.

    ``mlflow.tracking._model_registry.utils._get_store`` must not be called from inside a store
    builder: it takes a non-reentrant lock that the outer ``get_store`` already holds.
    """
    from mlflow.tracking._model_registry.utils import _get_store_registry

    return _get_store_registry().get_store_builder(store_uri)


def build_registry_store(store_uri: str, tracking_uri: str | None) -> Any:
    """Build (without the registry's lock or cache) the store MLflow would use for ``store_uri``."""
    builder = registry_store_builder(store_uri)
    params = set(inspect.signature(builder).parameters)
    if {"store_uri", "tracking_uri"} <= params:
        return builder(store_uri=store_uri, tracking_uri=tracking_uri)
    return builder(store_uri=store_uri)


def artifact_repository(artifact_uri: str, tracking_uri: str | None) -> Any:
    """MLflow's artifact repository for ``artifact_uri`` (any scheme MLflow supports).

    Inside ``mlflow server`` with artifact proxying, ``mlflow-artifacts:/...`` URIs are read from
    the server's own artifacts destination, as the server's handlers do (a client would go through
    the server's HTTP artifact routes, which the server cannot call on itself).
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    if artifact_uri.startswith("mlflow-artifacts:"):
        destination = os.environ.get(server_store_env()[2])
        if destination:
            path = urlparse(artifact_uri).path.lstrip("/")
            artifact_uri = f"{destination.rstrip('/')}/{path}"
    return get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)


def abstract_registry_store() -> type:
    """The base class of registry stores; its default prompt methods call the registry methods."""
    from mlflow.store.model_registry.abstract_store import AbstractStore

    return AbstractStore


# -- the tracking server (used by mlflow_steward.server only) ------------------------------------


def server_store_env() -> tuple[str, str, str]:
    """The environment variables ``mlflow server`` hands its workers: the backend store URI, the
    registry store URI and the proxied artifacts destination (``mlflow.server.constants``)."""
    from mlflow.server.constants import (
        ARTIFACTS_DESTINATION_ENV_VAR,
        BACKEND_STORE_URI_ENV_VAR,
        REGISTRY_STORE_URI_ENV_VAR,
    )

    return BACKEND_STORE_URI_ENV_VAR, REGISTRY_STORE_URI_ENV_VAR, ARTIFACTS_DESTINATION_ENV_VAR


def server_flask_app() -> Any:
    """The Flask app of ``mlflow server`` (its REST handlers, ajax routes and UI)."""
    from mlflow.server import app

    return app


def server_runs_under_uvicorn() -> bool:
    """``mlflow server`` tells its app factory which server runs it through ``_MLFLOW_SGI_NAME``."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME

    return _MLFLOW_SGI_NAME.get() == "uvicorn"


def server_fastapi_app(flask_app: Any) -> Any:
    """The FastAPI wrapper an app factory must return under uvicorn (MLflow's own routes + Flask)."""
    from mlflow.server.fastapi_app import create_fastapi_app

    return create_fastapi_app(flask_app)


def server_enable_basic_auth(flask_app: Any) -> Any:
    """MLflow's basic-auth app on ``flask_app``: its users, permissions and hooks.

    Returns what an app factory returns (the FastAPI wrapper under uvicorn, else the Flask app).
    """
    from mlflow.server.auth import create_app

    return create_app(flask_app)


def server_rest_call(
    tracking_uri: str, method: str, endpoint: str, payload: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Call a steward endpoint of an MLflow server with MLflow's own credentials and retries
    (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``TOKEN``). A refusal raises MLflow's
    ``RestException`` carrying the server's ``error_code`` and message."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request_safe

    key = "params" if method == "GET" else "json"
    response = http_request_safe(
        get_default_host_creds(tracking_uri), endpoint, method, **{key: payload or {}}
    )
    return response.json()


def server_authorize_with_model_read(routes: list[tuple[str, str]]) -> None:
    """Under basic-auth, let ``routes`` ((path, method) pairs) through for users who may read
    the registered model named by the request's ``name`` (MLflow's auth denies routes it has no
    validator for). A request without ``name`` is left to admins."""
    from flask import request
    from mlflow.server import auth

    can_read = auth.validate_can_read_registered_model

    def validator() -> bool:
        named = request.args.get("name") or (request.get_json(silent=True) or {}).get("name")
        return bool(named) and can_read()

    for route in routes:
        auth.BEFORE_REQUEST_VALIDATORS[route] = validator


def scoring_server_command(
    model_path: str, *, port: int, host: str, workers: int, timeout: int | None
) -> tuple[list[str], dict[str, str]]:
    """The command and environment that ``mlflow models serve --env-manager local`` runs: MLflow's
    pyfunc scoring server under uvicorn, with the model path passed through an environment
    variable that only ``scoring_server.get_cmd`` knows the name of."""
    import shlex
    import sys

    from mlflow.pyfunc import scoring_server

    command, env = scoring_server.get_cmd(model_path, port, host, timeout, workers)
    argv = shlex.split(command)
    if argv[0] != "uvicorn":
        raise RuntimeError(f"MLflow's scoring-server command changed shape: {command!r}")
    # The interpreter's own uvicorn, whatever PATH says.
    return [sys.executable, "-m", "uvicorn", *argv[1:]], env
