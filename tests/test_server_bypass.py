"""Raw-HTTP attempts to get around the governed server: each is refused (or shown harmless),
writes nothing to the registry, and leaves an entry on the audit log."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from mlflow import MlflowClient

from mlflow_steward.records import db
from mlflow_steward.records.audit import AuditLog
from tests.conftest import log_model_at
from tests.servers import mlflow_server

pytestmark = pytest.mark.slow

CONFIG = textwrap.dedent("""\
    policies:
      - use: require-signature
      - use: required-tags
        when: {action: set_alias, alias: production}
        with: {tags: [owner]}
      - use: metric-threshold
        when: {action: set_alias, alias: production}
        with: {metric: accuracy, min: 0.8}
      - use: metric-threshold
        id: metric-threshold-stage
        when: {action: transition_stage, stage: Production}
        with: {metric: accuracy, min: 0.8}
      - use: approvals
        id: demotion-approvals
        when: {action: delete_alias, alias: production}
        with: {count: 1}
    """)


@dataclass
class Registry:
    url: str
    backend: str
    good_model_id: str
    unsigned_model_id: str
    unsigned_run_id: str

    def snapshot(self) -> dict[str, Any]:
        """Everything a client can see of the registry (read straight from the database)."""
        client = MlflowClient(tracking_uri=self.backend, registry_uri=self.backend)
        models = {}
        for rm in client.search_registered_models():
            full = client.get_registered_model(rm.name)
            versions = {
                str(v.version): (v.current_stage, dict(v.tags), v.description)
                for v in client.search_model_versions(f"name = '{rm.name}'")
            }
            models[rm.name] = (
                dict(full.tags),
                {k: str(v) for k, v in full.aliases.items()},
                versions,
            )
        return models

    def audit_count(self) -> int:
        return AuditLog(db.get_engine(self.backend)).verify().entries


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("bypass")
    config = root / "steward.yaml"
    config.write_text(CONFIG)
    backend = f"sqlite:///{root / 'mlflow.db'}"
    with mlflow_server(backend, root, config=config) as server:
        good = log_model_at(server.url)
        weak = log_model_at(server.url, accuracy=0.5)
        unsigned = log_model_at(server.url, signature=False)
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        client.create_registered_model("fraud")
        for logged in (good, weak):
            client.create_model_version(
                "fraud",
                f"models:/{logged.model_id}",
                run_id=logged.run_id,
                model_id=logged.model_id,
            )
        client.set_model_version_tag("fraud", "1", "owner", "alice")
        client.set_model_version_tag("fraud", "2", "owner", "alice")
        client.set_registered_model_alias("fraud", "production", "1")
        yield Registry(server.url, backend, good.model_id, unsigned.model_id, unsigned.run_id)


API = "/api/2.0/mlflow"
AJAX = "/ajax-api/2.0/mlflow"
REFUSED = (403,)
INVALID = (400, 403, 404, 405, 415)

# name: (method, path, keyword arguments for requests, accepted status codes)
ATTEMPTS: dict[str, tuple[str, str, dict[str, Any], tuple[int, ...]]] = {
    "set alias to the weak version": (
        "POST",
        f"{API}/registered-models/alias",
        {"json": {"name": "fraud", "alias": "production", "version": "2"}},
        REFUSED,
    ),
    "set alias through the UI route": (
        "POST",
        f"{AJAX}/registered-models/alias",
        {"json": {"name": "fraud", "alias": "production", "version": "2"}},
        REFUSED,
    ),
    "set alias with a numeric version": (
        "POST",
        f"{API}/registered-models/alias",
        {"json": {"name": "fraud", "alias": "production", "version": 2}},
        INVALID,  # MLflow's request validation wants a string: 400 before any write
    ),
    "set alias in upper case": (
        "POST",
        f"{API}/registered-models/alias",
        {"json": {"name": "fraud", "alias": "PRODUCTION", "version": "2"}},
        REFUSED,  # alias rules match without regard to case
    ),
    "set alias to a version that does not exist": (
        "POST",
        f"{API}/registered-models/alias",
        {"json": {"name": "fraud", "alias": "production", "version": "99"}},
        INVALID,
    ),
    "legacy stage transition to Production": (
        "POST",
        f"{API}/model-versions/transition-stage",
        {
            "json": {
                "name": "fraud",
                "version": "2",
                "stage": "Production",
                "archive_existing_versions": True,
            }
        },
        REFUSED,
    ),
    "legacy stage transition through the UI route": (
        "POST",
        f"{AJAX}/model-versions/transition-stage",
        {
            "json": {
                "name": "fraud",
                "version": "2",
                "stage": "production",
                "archive_existing_versions": False,
            }
        },
        REFUSED,
    ),
    "steward tag on a version": (
        "POST",
        f"{API}/model-versions/set-tag",
        {
            "json": {
                "name": "fraud",
                "version": "2",
                "key": "steward.monitor.status",
                "value": "healthy",
            }
        },
        REFUSED,
    ),
    "steward tag on the model through the UI route, mixed case": (
        "POST",
        f"{AJAX}/registered-models/set-tag",
        {"json": {"name": "fraud", "key": "Steward.approved", "value": "true"}},
        REFUSED,
    ),
    "delete a steward tag": (
        "DELETE",
        f"{API}/model-versions/delete-tag",
        {"json": {"name": "fraud", "version": "1", "key": "steward.monitor.status"}},
        REFUSED,
    ),
    "create a model carrying a steward tag": (
        "POST",
        f"{API}/registered-models/create",
        {"json": {"name": "sneaky", "tags": [{"key": "steward.approved", "value": "true"}]}},
        REFUSED,
    ),
    "create a version carrying a steward tag": (
        "POST",
        f"{API}/model-versions/create",
        {
            "json": {
                "name": "fraud",
                "source": "models:/{good}",
                "model_id": "{good}",
                "tags": [{"key": "steward.approved", "value": "true"}],
            }
        },
        REFUSED,
    ),
    "register an unsigned model over REST": (
        "POST",
        f"{API}/model-versions/create",
        {
            "json": {
                "name": "fraud",
                "source": "models:/{unsigned}",
                "model_id": "{unsigned}",
                "run_id": "{unsigned_run}",
            }
        },
        REFUSED,
    ),
    "delete the version holding the alias": (
        "DELETE",
        f"{API}/model-versions/delete",
        {"json": {"name": "fraud", "version": "1"}},
        REFUSED,
    ),
    "delete the registered model": (
        "DELETE",
        f"{AJAX}/registered-models/delete",
        {"json": {"name": "fraud"}},
        REFUSED,
    ),
    "rename the registered model": (
        "POST",
        f"{API}/registered-models/rename",
        {"json": {"name": "fraud", "new_name": "fraud-old"}},
        REFUSED,
    ),
    "delete the production alias": (
        "DELETE",
        f"{API}/registered-models/alias",
        {"json": {"name": "fraud", "alias": "production"}},
        REFUSED,
    ),
    "malformed JSON": (
        "POST",
        f"{API}/registered-models/alias",
        {
            "data": '{"name": "fraud", "alias": "production", "version":',
            "headers": {"Content-Type": "application/json"},
        },
        INVALID,
    ),
    "duplicate JSON fields (the last one is judged and would be written)": (
        "POST",
        f"{API}/registered-models/alias",
        {
            "data": '{"name": "fraud", "alias": "production", "version": "1", "version": "2"}',
            "headers": {"Content-Type": "application/json"},
        },
        REFUSED,
    ),
    "JSON sent as text/plain": (
        "POST",
        f"{API}/registered-models/alias",
        {
            "data": json.dumps({"name": "fraud", "alias": "production", "version": "2"}),
            "headers": {"Content-Type": "text/plain"},
        },
        INVALID,
    ),
    "form-encoded body": (
        "POST",
        f"{API}/registered-models/alias",
        {"data": {"name": "fraud", "alias": "production", "version": "2"}},
        INVALID,
    ),
    "a write route with the wrong method": (
        "GET",
        f"{API}/model-versions/transition-stage",
        {"params": {"name": "fraud", "version": "2", "stage": "Production"}},
        INVALID,
    ),
    "trailing slash on the alias route": (
        "POST",
        f"{API}/registered-models/alias/",
        {"json": {"name": "fraud", "alias": "production", "version": "2"}},
        INVALID,
    ),
    "the Databricks transition route": (
        "POST",
        "/api/2.0/mlflow/databricks/model-versions/transition-stage",
        {"json": {"name": "fraud", "version": "2", "stage": "Production"}},
        INVALID,
    ),
}


def _fill(value: Any, registry: Registry) -> Any:
    if isinstance(value, str):
        return (
            value.replace("{good}", registry.good_model_id)
            .replace("{unsigned_run}", registry.unsigned_run_id)
            .replace("{unsigned}", registry.unsigned_model_id)
        )
    if isinstance(value, dict):
        return {k: _fill(v, registry) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, registry) for v in value]
    return value


def test_every_attempt_aims_at_a_route_the_server_guards():
    """The attempts below target routes the server's guard treats as governed (so that their
    refusals, the 4xx answers and the audit entries are steward's doing)."""
    from mlflow_steward.server import guard

    assert [
        name for name, (_, path, _, _) in ATTEMPTS.items() if not guard.governed_route(path)
    ] == []


@pytest.mark.parametrize("name", list(ATTEMPTS))
def test_attempt_is_refused_writes_nothing_and_is_audited(registry, name):
    method, path, kwargs, accepted = ATTEMPTS[name]
    before, audited = registry.snapshot(), registry.audit_count()
    response = requests.request(method, registry.url + path, timeout=30, **_fill(kwargs, registry))
    assert response.status_code in accepted, (response.status_code, response.text[:500])
    assert response.status_code < 500
    assert registry.snapshot() == before, "the registry changed"
    assert registry.audit_count() == audited + 1, "the attempt is not on the audit log"
    if response.status_code == 403:
        body = response.json()
        assert body["error_code"] == "PERMISSION_DENIED"
        assert "refused by steward" in body["message"]


def test_graphql_has_no_registry_mutation(registry):
    before = registry.snapshot()
    response = requests.post(
        f"{registry.url}/graphql",
        json={
            "query": 'mutation { setRegisteredModelAlias(name: "fraud", alias: "production", '
            'version: "2") { ok } }'
        },
        timeout=30,
    )
    assert response.status_code < 500
    assert "errors" in response.json()
    assert registry.snapshot() == before
    schema = requests.post(
        f"{registry.url}/graphql",
        json={"query": "{ __schema { mutationType { fields { name } } } }"},
        timeout=30,
    ).json()
    mutations = {f["name"] for f in schema["data"]["__schema"]["mutationType"]["fields"]}
    assert not {m for m in mutations if "Model" in m or "Alias" in m or "Tag" in m}, mutations


def test_the_chain_holds_after_the_attempts(registry):
    result = AuditLog(db.get_engine(registry.backend)).verify()
    assert result.ok, result.problem
