"""Basic auth on the governed server: real identities in decisions, four-eyes approvals, expiry."""

from __future__ import annotations

import textwrap
import time

import mlflow
import pytest
import requests
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_steward.cli.main import cli
from mlflow_steward.records import db
from mlflow_steward.records.audit import AuditLog
from tests.conftest import log_model_at
from tests.servers import basic_auth_env, create_user, mlflow_server

pytestmark = pytest.mark.slow

PASSWORD = "Steward-Test-Passw0rd!"
EXPIRES = 8  # seconds an approval counts in this test
CONFIG = textwrap.dedent(f"""\
    policies:
      - use: require-identity
      - use: approvals
        when: {{alias: production}}
        with: {{count: 2, expires_after: {EXPIRES}s}}
    """)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth")
    (root / "steward.yaml").write_text(CONFIG)
    env = basic_auth_env(root, PASSWORD)
    backend = f"sqlite:///{root / 'mlflow.db'}"
    with mlflow_server(backend, root, config=root / "steward.yaml", env=env) as server:
        for user in ("alice", "bob", "carol"):
            create_user(server.url, user, PASSWORD, auth=("admin", PASSWORD))
        server.backend = backend
        yield server


def as_user(monkeypatch, server, user: str) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    return MlflowClient(tracking_uri=server.url, registry_uri=server.url)


def steward(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def register(monkeypatch, server, name: str) -> str:
    client = as_user(monkeypatch, server, "alice")
    logged = log_model_at(server.url, accuracy=0.9, user="alice")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)  # log_model_at resets the global URI
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    return str(
        client.create_model_version(
            name, f"models:/{logged.model_id}", run_id=logged.run_id, model_id=logged.model_id
        ).version
    )


def test_unauthenticated_write_is_401_and_audited(auth_server):
    response = requests.post(
        f"{auth_server.url}/api/2.0/mlflow/registered-models/create",
        json={"name": "nobody"},
        auth=("bob", "not bob's password"),
        timeout=30,
    )
    assert response.status_code == 401
    last = AuditLog(db.get_engine(auth_server.backend)).entries(newest_first=True, limit=1)[0]
    assert (last.action, last.model, last.decision) == (
        "create_registered_model",
        "nobody",
        "refused",
    )
    assert last.outcome == "rejected: HTTP 401"
    assert last.actor == "anonymous"  # "bob" was claimed, not verified


def test_four_eyes_with_real_identities(auth_server, monkeypatch):
    version = register(monkeypatch, auth_server, "fraud")
    uri = f"models:/fraud/{version}"
    code, out = steward("approvals", "request", uri, "--alias", "production")
    assert code == 0, out
    assert "as alice" in out
    code, out = steward("approve", uri, "--alias", "production")
    assert code == 1
    assert "alice trained or registered this version" in out
    alice = as_user(monkeypatch, auth_server, "alice")
    with pytest.raises(MlflowException) as err:
        alice.set_registered_model_alias("fraud", "production", version)
    assert "0 of 2 required approvals" in err.value.message

    for reviewer in ("bob", "carol"):
        as_user(monkeypatch, auth_server, reviewer)
        code, out = steward("approve", uri, "--alias", "production", "--comment", "lgtm")
        assert code == 0, out
        assert f"as {reviewer}" in out
    alice = as_user(monkeypatch, auth_server, "alice")
    alice.set_registered_model_alias("fraud", "production", version)
    assert str(alice.get_model_version_by_alias("fraud", "production").version) == version

    entries = AuditLog(db.get_engine(auth_server.backend)).entries(model="fraud")
    applied = [(e.actor, e.action) for e in entries if e.outcome == "applied"]
    assert ("alice", "request_approval") in applied
    assert ("bob", "approve") in applied
    assert ("carol", "approve") in applied
    # the promotion, then its evidence (builtin.evidence)
    assert applied[-2:] == [("alice", "set_alias"), ("steward-evidence", "record_evidence")]
    assert ("alice", "approve", "refused") in {(e.actor, e.action, e.decision) for e in entries}
    assert {e.actor for e in entries} >= {"alice", "bob", "carol"}


def test_an_expired_approval_no_longer_counts(auth_server, monkeypatch):
    version = register(monkeypatch, auth_server, "churn")
    uri = f"models:/churn/{version}"
    as_user(monkeypatch, auth_server, "bob")
    assert steward("approve", uri, "--alias", "production")[0] == 0
    time.sleep(EXPIRES + 1)
    as_user(monkeypatch, auth_server, "carol")
    assert steward("approve", uri, "--alias", "production")[0] == 0
    alice = as_user(monkeypatch, auth_server, "alice")
    with pytest.raises(MlflowException) as err:
        alice.set_registered_model_alias("churn", "production", version)
    assert "1 of 2 required approvals for @production (carol); not counted: bob (expired)" in (
        err.value.message
    )
    assert (
        mlflow.MlflowClient(tracking_uri=auth_server.backend).get_registered_model("churn").aliases
        == {}
    )


def test_the_authenticated_registrant_cannot_approve_a_version_someone_else_trained(
    auth_server, monkeypatch
):
    """docs/server.md: the run's author is claimed by the client, so steward also records the
    authenticated registrant and counts both as authors. Here the run says it was trained by
    "dana"; alice registers it over basic auth, so alice may not approve it (bob may)."""
    client = as_user(monkeypatch, auth_server, "alice")
    logged = log_model_at(auth_server.url, accuracy=0.9, user="dana")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server.url)
    client.create_registered_model("risk")
    version = str(
        client.create_model_version(
            "risk", f"models:/{logged.model_id}", run_id=logged.run_id, model_id=logged.model_id
        ).version
    )
    assert client.get_run(logged.run_id).data.tags["mlflow.user"] == "dana"
    uri = f"models:/risk/{version}"
    code, out = steward("approve", uri, "--alias", "production")
    assert code == 1, out
    assert "alice trained or registered this version" in out
    as_user(monkeypatch, auth_server, "bob")
    code, out = steward("approve", uri, "--alias", "production")
    assert code == 0, out
    entries = AuditLog(db.get_engine(auth_server.backend)).entries(model="risk")
    assert [(e.actor, e.action, e.decision) for e in entries if e.action == "approve"] == [
        ("alice", "approve", "refused"),
        ("bob", "approve", "allowed"),
    ]
    registered = [e for e in entries if e.action == "create_model_version"]
    assert [(e.actor, e.version, e.outcome) for e in registered] == [("alice", version, "applied")]
