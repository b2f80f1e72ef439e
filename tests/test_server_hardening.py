"""Hostile input against a real governed server (``mlflow server --app-name steward``).

Every attempt here came from an attack run: non-object and deeply nested JSON, bad version
strings, odd names, broken credentials, huge bodies, on every governed registry route and on
steward's own routes. Each must answer JSON 4xx (``error_code``, ``message``) — never a 5xx,
which MLflow clients retry seven times — write nothing to the registry, and leave the audit
chain verifying. One server per backend for the whole module (basic auth, SQLite and
PostgreSQL), plus one in trusted-header mode for the identity-header attacks.
"""

from __future__ import annotations

import base64
import http.client
import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
import sqlalchemy as sa

from mlflow_steward.records import db
from mlflow_steward.records.audit import AuditLog
from tests.conftest import postgres_database
from tests.servers import Server, basic_auth_env, create_user, mlflow_server

pytestmark = pytest.mark.slow

PASSWORD = "Steward-Test-Passw0rd!"
# The shared bootstrap account may not create webhooks; named admins may (and are audited).
CONFIG = textwrap.dedent("""\
    policies:
      - use: require-identity
        id: webhooks-need-a-named-admin
        when: {action: [create_webhook, update_webhook, delete_webhook, test_webhook]}
        with: {anonymous: [anonymous, admin]}
      # The versions here have made-up sources (s3://bucket/...) that nothing can hash: the
      # content digest is left to the models it is meant for (none here); these tests are about
      # malformed requests.
      - use: content-digest
        when: {model: "digest-checked-*"}
    """)

#: The registry's tables (MLflow's) and what orders their rows; compared before and after.
REGISTRY_TABLES = (
    "registered_models",
    "model_versions",
    "registered_model_tags",
    "model_version_tags",
    "registered_model_aliases",
    "webhooks",
    "webhook_events",
)


def _basic(user: str, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


ALICE = _basic("alice")
OPS = _basic("ops")  # a named admin
ADMIN = _basic("admin")
ADMIN_HEADERS = {"Authorization": ADMIN}


@dataclass
class Target:
    server: Server
    backend: str

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of MLflow's registry tables, read straight from the database."""
        engine = sa.create_engine(self.backend)
        try:
            out = {}
            with engine.connect() as conn:
                for table in REGISTRY_TABLES:
                    rows = conn.execute(sa.text(f"SELECT * FROM {table}")).all()
                    out[table] = sorted(tuple(map(repr, r)) for r in rows)
            return out
        finally:
            engine.dispose()

    def verify(self) -> Any:
        return AuditLog(db.get_engine(self.backend)).verify()


def _start(backend: str, root: Path) -> Iterator[Target]:
    (root / "steward.yaml").write_text(CONFIG)
    env = {
        **basic_auth_env(root, PASSWORD),
        # MLflow resolves a webhook's host and refuses private addresses; no public one here.
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    }
    with mlflow_server(backend, root, config=root / "steward.yaml", env=env) as server:
        admin = {"Authorization": ADMIN}
        for user in ("alice", "ops"):
            create_user(server.url, user, PASSWORD, headers=admin)
        promoted = requests.patch(
            f"{server.url}/api/2.0/mlflow/users/update-admin",
            json={"username": "ops", "is_admin": True},
            headers=admin,
            timeout=30,
        )
        assert promoted.status_code == 200, promoted.text
        alice = {"Authorization": ALICE}
        for path, body in (
            ("registered-models/create", {"name": "base"}),
            ("model-versions/create", {"name": "base", "source": "s3://bucket/base/1"}),
            ("registered-models/alias", {"name": "base", "alias": "prod", "version": "1"}),
        ):
            made = requests.post(
                f"{server.url}/api/2.0/mlflow/{path}", json=body, headers=alice, timeout=30
            )
            assert made.status_code == 200, (path, made.text, server.log_tail())
        yield Target(server, backend)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def target(request, tmp_path_factory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp(f"hardening-{request.param}")
    if request.param == "sqlite":
        yield from _start(f"sqlite:///{root / 'mlflow.db'}", root)
    else:
        with postgres_database() as uri:
            yield from _start(uri, root)


# -- the attempts ---------------------------------------------------------------------------------

API, AJAX = "/api/2.0/mlflow", "/ajax-api/2.0/mlflow"
STEWARD = ("/api/2.0/steward", "/ajax-api/2.0/steward")
CLIENT_ERRORS = frozenset({400, 401, 403, 404, 405, 409, 413, 415})

#: (method, route under /mlflow, a well-formed body) of every governed registry write.
WRITE_ROUTES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("POST", "registered-models/create", {"name": "x"}),
    ("POST", "registered-models/rename", {"name": "base", "new_name": "x"}),
    ("PATCH", "registered-models/update", {"name": "base", "description": "x"}),
    ("DELETE", "registered-models/delete", {"name": "base"}),
    ("POST", "registered-models/set-tag", {"name": "base", "key": "k", "value": "v"}),
    ("DELETE", "registered-models/delete-tag", {"name": "base", "key": "k"}),
    ("POST", "registered-models/alias", {"name": "base", "alias": "a", "version": "1"}),
    ("DELETE", "registered-models/alias", {"name": "base", "alias": "prod"}),
    ("POST", "model-versions/create", {"name": "base", "source": "s3://b/x"}),
    ("PATCH", "model-versions/update", {"name": "base", "version": "1", "description": "x"}),
    ("DELETE", "model-versions/delete", {"name": "base", "version": "1"}),
    (
        "POST",
        "model-versions/transition-stage",
        {"name": "base", "version": "1", "stage": "Staging", "archive_existing_versions": False},
    ),
    ("POST", "model-versions/set-tag", {"name": "base", "version": "1", "key": "k", "value": "v"}),
    ("DELETE", "model-versions/delete-tag", {"name": "base", "version": "1", "key": "k"}),
)
DEEP = b"[" * 100_000
BAD_BODIES: dict[str, bytes] = {
    "list": b"[]",
    "string": b'"x"',
    "number": b"1",
    "null": b"null",
    "deep": DEEP,
    "invalid": b'{"name": ',
    "deep-field": b'{"name": ' + DEEP,
}
BAD_VERSIONS = ("abc", "-1", "1.5", "", "99999999999999999999999")
BAD_NAMES = {
    "slash": "a/b",
    "at": "a@b",
    "nul": "a\x00b",
    "newline": "a\nb",
    "long": "n" * 10_000,
}


WEBHOOK = {
    "name": "hook",
    "url": "https://127.0.0.1:9/hook",  # nothing listens: the test delivery is refused anyway
    "events": [{"entity": "MODEL_VERSION", "action": "CREATED"}],
}


@dataclass(frozen=True)
class Attempt:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    expected: frozenset[int] = CLIENT_ERRORS


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


def _attempts() -> dict[str, Attempt]:
    out: dict[str, Attempt] = {}
    for method, route, good in WRITE_ROUTES:
        for prefix in (API, AJAX):
            where = f"{method} {prefix}/{route}"
            for kind, body in BAD_BODIES.items():
                # The UI twins take the same handlers: two body kinds there are enough.
                if prefix == AJAX and kind not in ("list", "deep"):
                    continue
                out[f"{where} {kind}"] = Attempt(method, f"{prefix}/{route}", body)
        if "version" in good:
            for bad in BAD_VERSIONS:
                out[f"{method} {route} version={bad!r}"] = Attempt(
                    method, f"{API}/{route}", _json({**good, "version": bad})
                )
        for label, name in BAD_NAMES.items():
            key = "new_name" if route.endswith("rename") else "name"
            if route in ("registered-models/create", "registered-models/rename") or label in (
                "nul",
                "long",
            ):
                out[f"{method} {route} name {label}"] = Attempt(
                    method, f"{API}/{route}", _json({**good, key: name})
                )
    for name in ("nul", "long", "newline"):
        out[f"GET model-versions/get name {name}"] = Attempt(
            "GET", f"{API}/model-versions/get?name={BAD_NAMES[name]!s}&version=1"
        )
    for bad in BAD_VERSIONS:
        out[f"GET model-versions/get version={bad!r}"] = Attempt(
            "GET", f"{API}/model-versions/get?name=base&version={bad}"
        )
    # Credentials that are not valid Basic credentials, on a write and on steward's routes.
    for label, header in (
        ("digest", 'Digest username="alice", realm="mlflow", nonce="1", response="x"'),
        ("basic-garbage", "Basic !!!"),
        ("basic-no-colon", "Basic " + base64.b64encode(b"alice").decode()),
        ("basic-not-utf8", "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()),
        ("bearer", "Bearer x"),
    ):
        out[f"auth {label} create"] = Attempt(
            "POST",
            f"{API}/registered-models/create",
            _json({"name": "x"}),
            {"Authorization": header},
        )
        out[f"auth {label} steward approve"] = Attempt(
            "POST",
            f"{STEWARD[0]}/approvals/approve",
            _json({"name": "base", "version": "1", "alias": "prod"}),
            {"Authorization": header},
        )
    # steward's own routes
    for prefix in STEWARD:
        for verdict in ("request", "approve", "reject"):
            for kind in ("list", "string", "null", "deep", "invalid"):
                if prefix == STEWARD[1] and kind not in ("list", "deep"):
                    continue
                out[f"{prefix}/approvals/{verdict} {kind}"] = Attempt(
                    "POST", f"{prefix}/approvals/{verdict}", BAD_BODIES[kind]
                )
    good_review = {"name": "base", "version": "1", "alias": "prod"}
    for bad in BAD_VERSIONS:
        out[f"steward approve version={bad!r}"] = Attempt(
            "POST", f"{STEWARD[0]}/approvals/approve", _json({**good_review, "version": bad})
        )
    for label, name in BAD_NAMES.items():
        out[f"steward approve name {label}"] = Attempt(
            "POST", f"{STEWARD[0]}/approvals/request", _json({**good_review, "name": name})
        )
    out["steward approve object version"] = Attempt(
        "POST", f"{STEWARD[0]}/approvals/approve", _json({**good_review, "version": {"a": 1}})
    )
    out["steward approve nested alias"] = Attempt(
        "POST", f"{STEWARD[0]}/approvals/approve", _json({**good_review, "alias": [[["x"]]]})
    )
    out["steward approvals wrong method"] = Attempt("DELETE", f"{STEWARD[0]}/approvals")
    out["steward list name nul"] = Attempt("GET", f"{STEWARD[0]}/approvals?name=a%00b")
    out["steward deployments name long"] = Attempt(
        "GET", f"{STEWARD[0]}/deployments?name={'n' * 10_000}"
    )
    # Huge bodies: a 12 MB name, and a body of 12 MB of whitespace.
    out["huge name create"] = Attempt(
        "POST", f"{API}/registered-models/create", _json({"name": "h" * 12_000_000})
    )
    out["huge steward body"] = Attempt(
        "POST", f"{STEWARD[0]}/approvals/request", b" " * 12_000_000 + _json(good_review)
    )
    # Webhooks: the bootstrap admin is refused by policy; broken bodies are refused before.
    out["webhook create as bootstrap admin"] = Attempt(
        "POST", f"{API}/webhooks", _json(WEBHOOK), {"Authorization": ADMIN}, frozenset({403})
    )
    out["webhook create lower-case enum"] = Attempt(
        "POST",
        f"{API}/webhooks",
        _json({**WEBHOOK, "events": [{"entity": "model_version", "action": "created"}]}),
        {"Authorization": OPS},
    )
    for kind in ("list", "deep", "invalid"):
        out[f"webhook create {kind}"] = Attempt(
            "POST", f"{API}/webhooks", BAD_BODIES[kind], {"Authorization": OPS}
        )
    out["webhook update unknown"] = Attempt(
        "PATCH", f"{API}/webhooks/nope", _json({"name": "x"}), {"Authorization": OPS}
    )
    out["webhook delete unknown"] = Attempt(
        "DELETE", f"{API}/webhooks/nope", None, {"Authorization": OPS}
    )
    out["webhook test unknown"] = Attempt(
        "POST", f"{API}/webhooks/nope/test", b"{}", {"Authorization": OPS}
    )
    return out


ATTEMPTS = _attempts()


def send(url: str, attempt: Attempt) -> tuple[int, bytes, dict[str, str]]:
    """The attempt over raw HTTP (``requests`` would normalise headers and bodies)."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
    headers = {"Authorization": ALICE, "Content-Type": "application/json"}
    headers.update(attempt.headers)
    path = attempt.path.replace("\x00", "%00").replace("\n", "%0A")
    try:
        conn.request(attempt.method, path, body=attempt.body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


@pytest.mark.parametrize("name", list(ATTEMPTS))
def test_attempt_is_a_json_4xx_and_writes_nothing(target: Target, name: str) -> None:
    attempt = ATTEMPTS[name]
    before = target.snapshot()
    status, body, _headers = send(target.server.url, attempt)
    assert status in attempt.expected, (status, body[:500], target.server.log_tail(3000))
    data = json.loads(body)
    assert isinstance(data, dict), data
    assert data.get("error_code"), data
    assert data.get("message"), data
    assert target.snapshot() == before


def _entries(target: Target) -> list[Any]:
    return AuditLog(db.get_engine(target.backend)).entries()


def test_webhooks_are_governed_and_audited(target: Target) -> None:
    url = f"{target.server.url}{API}/webhooks"
    refused = requests.post(url, json=WEBHOOK, headers={"Authorization": ADMIN}, timeout=30)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error_code"] == "PERMISSION_DENIED"
    assert "webhooks-need-a-named-admin" in refused.json()["message"]
    ops = {"Authorization": OPS}
    created = requests.post(url, json={**WEBHOOK, "secret": "s3cret"}, headers=ops, timeout=30)
    assert created.status_code == 200, created.text
    hook_id = created.json()["webhook"]["webhook_id"]
    updated = requests.patch(f"{url}/{hook_id}", json={"name": "hook2"}, headers=ops, timeout=30)
    assert updated.status_code == 200, updated.text
    tested = requests.post(f"{url}/{hook_id}/test", json={}, headers=ADMIN_HEADERS, timeout=30)
    assert tested.status_code == 403, tested.text  # refused before MLflow sends anything
    deleted = requests.delete(f"{url}/{hook_id}", headers=ops, timeout=30)
    assert deleted.status_code == 200, deleted.text
    seen = [
        (e.actor, e.action, e.model, e.decision)
        for e in _entries(target)
        if e.action.endswith("_webhook")
    ]
    assert seen[-5:] == [
        ("admin", "create_webhook", "hook", "refused"),
        ("ops", "create_webhook", "hook", "allowed"),
        ("ops", "update_webhook", "hook", "allowed"),
        ("admin", "test_webhook", "hook2", "refused"),
        ("ops", "delete_webhook", "hook2", "allowed"),
    ]
    assert all("s3cret" not in json.dumps(e.to_dict()) for e in _entries(target))


def test_a_flood_of_bad_requests_does_not_grow_the_log_without_bound(target: Target) -> None:
    before = len(_entries(target))
    for i in range(60):
        response = requests.post(
            f"{target.server.url}{API}/registered-models/create",
            data=b"[]" if i % 2 else b"{",
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 400
    # At most the per-client allowance of one window, plus one summing-up entry.
    assert len(_entries(target)) - before <= 11


def test_the_audit_chain_still_verifies(target: Target) -> None:
    result = target.verify()
    assert result.ok, result.problem


# -- identity: trusted header (raw HTTP: `requests` would merge or normalise the headers) -------

HEADER = "X-Forwarded-User"


@pytest.fixture(scope="module")
def header_server(tmp_path_factory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("hardening-header")
    (root / "steward.yaml").write_text("policies:\n  - use: require-identity\n")
    backend = f"sqlite:///{root / 'mlflow.db'}"
    env = {"MLFLOW_STEWARD_AUTH": "trusted-header"}
    with mlflow_server(backend, root, config=root / "steward.yaml", env=env) as server:
        yield Target(server, backend)


def raw_post(url: str, path: str, body: dict[str, Any], headers: list[tuple[str, str]]) -> Any:
    """POST with ``headers`` sent exactly as given (repeats and spellings kept)."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        data = _json(body)
        conn.putrequest("POST", path)
        for name, value in [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            *headers,
        ]:
            conn.putheader(name, value)
        conn.endheaders(data)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.parametrize(
    "headers",
    [
        [(HEADER, "alice"), (HEADER, "mallory")],
        [(HEADER, "alice"), (HEADER.lower(), "alice")],
        [("X_Forwarded_User", "mallory")],
        [(HEADER, "alice"), ("X_Forwarded_User", "mallory")],
        [("X_Forwarded_User", "mallory"), (HEADER, "alice")],
        [("x_forwarded-user", "mallory")],
        [(HEADER, "alice,mallory")],
    ],
    ids=[
        "twice",
        "twice-other-case",
        "underscore",
        "dash-then-underscore",
        "underscore-then-dash",
        "mixed",
        "comma",
    ],
)
def test_an_ambiguous_identity_header_is_refused_before_anything(header_server, headers):
    before = header_server.snapshot()
    entries = len(_entries(header_server))
    status, body = raw_post(
        header_server.server.url, f"{API}/registered-models/create", {"name": "smuggled"}, headers
    )
    assert status == 400, body
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert HEADER in body["message"] or "X_Forwarded_User" in body["message"]
    assert header_server.snapshot() == before
    assert len(_entries(header_server)) == entries  # refused before anything, audit included


def test_one_identity_header_names_the_actor(header_server):
    status, body = raw_post(
        header_server.server.url,
        f"{API}/registered-models/create",
        {"name": "from-proxy"},
        [(HEADER, "alice")],
    )
    assert status == 200, body
    last = _entries(header_server)[-1]
    assert (last.actor, last.action, last.model) == (
        "alice",
        "create_registered_model",
        "from-proxy",
    )
    assert header_server.verify().ok


# -- identity: a custom authorization_function in MLflow's auth configuration ------------------

CUSTOM_AUTH = textwrap.dedent("""\
    from flask import request
    from werkzeug.datastructures import Authorization
    from mlflow.server.auth import make_basic_auth_response

    TOKENS = {"tok-admin": "admin", "tok-alice": "alice"}

    def authenticate():
        user = TOKENS.get(request.headers.get("X-Test-Token", ""))
        if user is None:
            return make_basic_auth_response()
        return Authorization("basic", {"username": user, "password": ""})
    """)


def test_the_actor_is_whom_a_custom_authorization_function_authenticated(tmp_path):
    (tmp_path / "steward_test_auth.py").write_text(CUSTOM_AUTH)
    (tmp_path / "steward.yaml").write_text("policies:\n  - use: require-identity\n")
    env = {
        **basic_auth_env(
            tmp_path, PASSWORD, authorization_function="steward_test_auth:authenticate"
        ),
        "PYTHONPATH": str(tmp_path),
    }
    backend = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with mlflow_server(backend, tmp_path, config=tmp_path / "steward.yaml", env=env) as server:
        create_user(server.url, "alice", PASSWORD, headers={"X-Test-Token": "tok-admin"})
        # Basic credentials naming someone else ride along: steward must not read them.
        created = requests.post(
            f"{server.url}{API}/registered-models/create",
            json={"name": "by-token"},
            headers={"X-Test-Token": "tok-alice", "Authorization": _basic("mallory", "x")},
            timeout=30,
        )
        assert created.status_code == 200, (created.text, server.log_tail())
        refused = requests.post(
            f"{server.url}{API}/registered-models/create",
            json={"name": "no-token"},
            timeout=30,
        )
        assert refused.status_code == 401
        assert refused.json()["error_code"] == "UNAUTHENTICATED"
    entries = AuditLog(db.get_engine(backend)).entries()
    assert [(e.actor, e.model, e.decision) for e in entries] == [
        ("alice", "by-token", "allowed"),
        ("anonymous", "no-token", "refused"),
    ]
