"""`mlflow server --app-name steward` as a real process: every client is governed on the server."""

from __future__ import annotations

import json

import mlflow
import pytest
import requests
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_steward.cli.main import cli
from mlflow_steward.plugins.events import DIGEST_TAG
from mlflow_steward.records import db
from mlflow_steward.records.audit import AuditLog
from tests.conftest import EXAMPLE_CONFIG, log_model_at
from tests.servers import mlflow_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    config = root / "steward.yaml"
    config.write_text(EXAMPLE_CONFIG)
    backend = f"sqlite:///{root / 'mlflow.db'}"
    with mlflow_server(backend, root, config=config) as server:
        server.backend = backend
        yield server


def audit(backend: str) -> AuditLog:
    return AuditLog(db.get_engine(backend))


def test_the_walkthrough_is_refused_the_same_way_on_the_server(sqlite_server):
    client = MlflowClient(tracking_uri=sqlite_server.url, registry_uri=sqlite_server.url)
    unsigned = log_model_at(sqlite_server.url, signature=False)
    good = log_model_at(sqlite_server.url, accuracy=0.93)
    weak = log_model_at(sqlite_server.url, accuracy=0.5)
    mlflow.set_tracking_uri(sqlite_server.url)
    try:
        with pytest.raises(MlflowException) as err:
            mlflow.register_model(unsigned.uri, "walk")
        assert err.value.error_code == "PERMISSION_DENIED"
        assert "[require-signature] the model has no signature" in err.value.message
        assert client.search_registered_models("name = 'walk'") == []
        v_good = mlflow.register_model(good.uri, "walk")
        v_weak = mlflow.register_model(weak.uri, "walk")
    finally:
        mlflow.set_tracking_uri(None)
    with pytest.raises(MlflowException) as err:
        client.set_registered_model_alias("walk", "production", v_good.version)
    assert err.value.error_code == "PERMISSION_DENIED"
    assert "[required-tags] missing tag owner on the version" in err.value.message
    client.set_model_version_tag("walk", v_weak.version, "owner", "alice")
    with pytest.raises(MlflowException) as err:
        client.set_registered_model_alias("walk", "production", v_weak.version)
    assert "[metric-threshold] accuracy=0.5 is below the minimum 0.8" in err.value.message
    assert client.get_registered_model("walk").aliases == {}
    client.set_model_version_tag("walk", v_good.version, "owner", "alice")
    client.set_registered_model_alias("walk", "production", v_good.version)
    assert str(client.get_model_version_by_alias("walk", "production").version) == str(
        v_good.version
    )

    entries = [e for e in audit(sqlite_server.backend).entries(model="walk")]
    # no authentication configured; the evidence of the promotion is steward's own entry
    assert {e.actor for e in entries} == {"anonymous", "steward-evidence"}
    assert [e.action for e in entries if e.actor == "steward-evidence"] == ["record_evidence"]
    assert [(e.action, e.decision) for e in entries if e.action == "set_alias"] == [
        ("set_alias", "refused"),
        ("set_alias", "refused"),
        ("set_alias", "allowed"),
    ]
    assert audit(sqlite_server.backend).verify().ok


def test_raw_http_and_the_ui_routes_get_json_403_with_reasons(sqlite_server):
    client = MlflowClient(tracking_uri=sqlite_server.url, registry_uri=sqlite_server.url)
    logged = log_model_at(sqlite_server.url)
    client.create_registered_model("raw")
    version = client.create_model_version(
        "raw", f"models:/{logged.model_id}", run_id=logged.run_id, model_id=logged.model_id
    ).version
    for prefix in ("/api/2.0", "/ajax-api/2.0"):
        response = requests.post(
            f"{sqlite_server.url}{prefix}/mlflow/registered-models/alias",
            json={"name": "raw", "alias": "production", "version": str(version)},
            timeout=30,
        )
        assert response.status_code == 403
        assert response.headers["Content-Type"].startswith("application/json")
        body = response.json()
        assert body["error_code"] == "PERMISSION_DENIED"
        assert "[required-tags] missing tag owner on the version" in body["message"]
    assert client.get_registered_model("raw").aliases == {}


def test_reserved_tags_are_refused_on_every_write_route(sqlite_server):
    client = MlflowClient(tracking_uri=sqlite_server.url, registry_uri=sqlite_server.url)
    logged = log_model_at(sqlite_server.url)
    client.create_registered_model("tags")
    client.create_model_version(
        "tags", f"models:/{logged.model_id}", run_id=logged.run_id, model_id=logged.model_id
    )
    base = f"{sqlite_server.url}/api/2.0/mlflow"
    attempts = [
        (
            "POST",
            "/model-versions/set-tag",
            {"name": "tags", "version": "1", "key": "steward.monitor.status", "value": "ok"},
        ),
        ("POST", "/registered-models/set-tag", {"name": "tags", "key": "steward.x", "value": "1"}),
        (
            "DELETE",
            "/model-versions/delete-tag",
            {"name": "tags", "version": "1", "key": "steward.monitor.status"},
        ),
        ("DELETE", "/registered-models/delete-tag", {"name": "tags", "key": "Steward.x"}),
    ]
    for method, path, payload in attempts:
        response = requests.request(method, base + path, json=payload, timeout=30)
        assert response.status_code == 403, (path, response.text)
        assert "[reserved-tags]" in response.json()["message"]
    assert client.get_model_version("tags", "1").tags.keys() == {
        DIGEST_TAG
    }  # only steward's own, at registration
    assert client.get_registered_model("tags").tags == {}


def test_approvals_endpoints_and_cli_against_the_server(sqlite_server, monkeypatch):
    client = MlflowClient(tracking_uri=sqlite_server.url, registry_uri=sqlite_server.url)
    logged = log_model_at(sqlite_server.url)
    client.create_registered_model("reviews")
    client.create_model_version(
        "reviews", f"models:/{logged.model_id}", run_id=logged.run_id, model_id=logged.model_id
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_server.url)
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "approvals",
            "request",
            "models:/reviews/1",
            "--alias",
            "production",
            "--comment",
            "ship it",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "requested approval of models:/reviews/1 for @production as anonymous" in result.output
    listed = runner.invoke(cli, ["approvals", "list", "--model", "reviews", "--json"])
    assert [(r["verdict"], r["actor"], r["comment"]) for r in json.loads(listed.output)] == [
        ("request", "anonymous", "ship it")
    ]
    bad = requests.post(
        f"{sqlite_server.url}/api/2.0/steward/approvals/approve",
        json={"name": "reviews", "alias": "production"},
        timeout=30,
    )
    assert bad.status_code == 400
    assert bad.json() == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "missing field 'version'",
    }
    missing = requests.post(
        f"{sqlite_server.url}/api/2.0/steward/approvals/approve",
        json={"name": "reviews", "version": "9", "alias": "production"},
        timeout=30,
    )
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_trusted_header_identity_and_require_identity(tmp_path):
    config = tmp_path / "steward.yaml"
    config.write_text("policies:\n  - use: require-identity\n")
    backend = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"MLFLOW_STEWARD_AUTH": "trusted-header", "MLFLOW_STEWARD_TRUSTED_HEADER": "X-User"}
    with mlflow_server(backend, tmp_path, config=config, env=env) as server:
        url = f"{server.url}/api/2.0/mlflow/registered-models/create"
        anonymous = requests.post(url, json={"name": "ident"}, timeout=30)
        assert anonymous.status_code == 403
        assert (
            "[require-identity] create_registered_model needs an authenticated identity"
            in (anonymous.json()["message"])
        )
        named = requests.post(url, json={"name": "ident"}, headers={"X-User": "bob"}, timeout=30)
        assert named.status_code == 200, named.text
    entries = audit(backend).entries(model="ident")
    assert [(e.actor, e.decision) for e in entries] == [
        ("anonymous", "refused"),
        ("bob", "allowed"),
    ]


def test_several_gunicorn_workers(tmp_path):
    config = tmp_path / "steward.yaml"
    config.write_text(EXAMPLE_CONFIG)
    backend = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with mlflow_server(
        backend,
        tmp_path,
        config=config,
        extra_args=("--gunicorn-opts", "--workers 2 --timeout 120"),
    ) as server:
        base = f"{server.url}/api/2.0/mlflow/registered-models"
        for i in range(6):  # gunicorn hands each request to either worker
            created = requests.post(f"{base}/create", json={"name": f"g{i}"}, timeout=30)
            assert created.status_code == 200, created.text
            refused = requests.post(
                f"{base}/set-tag",
                json={"name": f"g{i}", "key": "steward.x", "value": "1"},
                timeout=30,
            )
            assert refused.status_code == 403
    assert audit(backend).verify().entries == 12  # 6 models created, 6 steward.* tags refused


def test_the_server_sees_deployments_recorded_by_any_host(sqlite_server):
    """Deployment state lives in the registry database: what a host records, the server lists."""
    from mlflow_steward.config import StewardConfig
    from mlflow_steward.deployment.host import DeploymentHost
    from mlflow_steward.lifecycle.session import StewardSession
    from mlflow_steward.plugins.manager import create_plugin_manager
    from tests.test_deploy_host import RackPlugin

    client = MlflowClient(tracking_uri=sqlite_server.url, registry_uri=sqlite_server.url)
    logged = log_model_at(sqlite_server.url)
    client.create_registered_model("served")
    client.create_model_version(
        "served", f"models:/{logged.model_id}", run_id=logged.run_id, model_id=logged.model_id
    )
    session = StewardSession(
        registry_uri=f"steward+{sqlite_server.backend}",
        # Its artifacts are proxied by the server (mlflow-artifacts:/): read them through it, as
        # the content-digest check of the deploy must.
        tracking_uri=sqlite_server.url,
        config=StewardConfig(),
        pm=create_plugin_manager(plugins=[RackPlugin()], autoload=False),
    )
    DeploymentHost(session).create("served-rack", "models:/served/1", target="rack")
    listed = requests.get(
        f"{sqlite_server.url}/api/2.0/steward/deployments", params={"name": "served"}, timeout=30
    )
    assert listed.status_code == 200
    (deployment,) = listed.json()["deployments"]
    assert (deployment["name"], deployment["target"], deployment["version"]) == (
        "served-rack",
        "rack",
        "1",
    )
    assert [s["kind"] for s in deployment["history"]] == ["create"]
    other = requests.get(
        f"{sqlite_server.url}/ajax-api/2.0/steward/deployments", params={"name": "nope"}, timeout=30
    )
    assert other.json() == {"deployments": []}
