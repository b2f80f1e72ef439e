"""A governed server with basic auth for the reviewers' page tests (shared by the requests-based
layer and the browser layer): users, a model version alice registered, its approval request."""

from __future__ import annotations

import os
import re
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from mlflow_steward.records import db, schema
from tests.conftest import log_model_at
from tests.servers import basic_auth_env, create_user, mlflow_server

PASSWORD = "Steward-Test-Passw0rd!"
CONFIG = textwrap.dedent("""\
    policies:
      - use: require-identity
      - use: approvals
        when: {alias: production}
        with: {count: 1}
    """)
#: HTML and script in a model name (no "/" or "@": the server refuses those in new names), a tag
#: value and a comment: each must reach the page as text.
HOSTILE_NAME = 'fraud<img src=x onerror="document.title=1">'
HOSTILE_TAG = "<script>document.title='tag'</script>"
HOSTILE_COMMENT = "<b>looks</b> good <script>document.title='comment'</script>"
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


@contextmanager
def page_server(root: Path, users: tuple[str, ...] = ("alice", "bob", "carol")) -> Any:
    (root / "steward.yaml").write_text(CONFIG)
    env = basic_auth_env(root, PASSWORD)
    backend = f"sqlite:///{root / 'mlflow.db'}"
    with mlflow_server(backend, root, config=root / "steward.yaml", env=env) as server:
        for user in users:
            create_user(server.url, user, PASSWORD, auth=("admin", PASSWORD))
        server.backend = backend
        yield server


def api(server: Any, user: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(
        method, f"{server.url}{path}", auth=(user, PASSWORD), timeout=60, **kwargs
    )


def _log_model(server: Any) -> Any:
    """alice logs a real (tiny) model through the server."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(MLFLOW_TRACKING_USERNAME="alice", MLFLOW_TRACKING_PASSWORD=PASSWORD)
    try:
        return log_model_at(server.url, accuracy=0.9, user="alice")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def register(server: Any, name: str, *, tag: str | None = None) -> str:
    """alice registers a new version of ``name`` (one logged model serves every registration:
    logging one takes seconds); returns the version."""
    logged = getattr(server, "logged_model", None)
    if logged is None:
        server.logged_model = logged = _log_model(server)
    if (
        api(
            server, "alice", "GET", "/api/2.0/mlflow/registered-models/get", params={"name": name}
        ).status_code
        != 200
    ):
        created = api(
            server, "alice", "POST", "/api/2.0/mlflow/registered-models/create", json={"name": name}
        )
        assert created.status_code == 200, created.text
    made = api(
        server,
        "alice",
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        json={
            "name": name,
            "source": f"models:/{logged.model_id}",
            "run_id": logged.run_id,
            "model_id": logged.model_id,
        },
    )
    assert made.status_code == 200, made.text
    version = made.json()["model_version"]["version"]
    if tag is not None:
        tagged = api(
            server,
            "alice",
            "POST",
            "/api/2.0/mlflow/model-versions/set-tag",
            json={"name": name, "version": version, "key": "note", "value": tag},
        )
        assert tagged.status_code == 200, tagged.text
    return str(version)


def request_approval(server: Any, user: str, name: str, version: str, comment: str = "") -> None:
    response = api(
        server,
        user,
        "POST",
        "/api/2.0/steward/approvals/request",
        json={"name": name, "version": version, "alias": "production", "comment": comment},
    )
    assert response.status_code == 200, response.text


def deny_reading(server: Any, user: str, name: str) -> None:
    """The admin takes ``user``'s permission to read registered model ``name`` away."""
    response = api(
        server,
        "admin",
        "POST",
        "/api/3.0/mlflow/users/permissions/grant",
        json={
            "username": user,
            "resource_type": "registered_model",
            "resource_id": name,
            "permission": "DENY",
        },
    )
    assert response.status_code == 200, response.text


@contextmanager
def tampered(backend: str, seq: int, outcome: str) -> Any:
    """Edit audit entry ``seq``'s outcome in the database (as an intruder would), restored after."""
    engine = db.get_engine(backend)
    table = schema.audit
    with engine.begin() as conn:
        before = conn.execute(sa.select(table.c.outcome).where(table.c.seq == seq)).scalar_one()
        conn.execute(table.update().where(table.c.seq == seq).values(outcome=outcome))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(table.update().where(table.c.seq == seq).values(outcome=before))
