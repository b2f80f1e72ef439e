"""Attacks on the facts that decide governed actions, against real `mlflow server --app-name
steward` processes on SQLite and on PostgreSQL (one server per backend for the module).

Each class below was a way around governance in 0.1.0:

1. prompt markers: tagging a version or model as a prompt switched every model policy off;
2. version spellings: ``"01"``, ``" 1"``, ``"+1"``, Arabic-Indic and full-width digits are all
   version 1 to MLflow's store but were other strings to steward;
3. approvals outliving what was reviewed: a model deleted and created again, another model renamed
   onto the name, artifacts replaced through the artifact proxy after the approval;
4. a promotion's approval also approving the demotion.

Every attempt must be refused with a JSON 4xx (``error_code``, ``message``) and leave the
registry exactly as it was; attempts that reached a decision are on the audit log; the chain
verifies at the end. Identity comes from a trusted header (``X-Forwarded-User``), so each attempt
can be made as a chosen person.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow import MlflowClient

from mlflow_steward.plugins.events import DIGEST_TAG
from mlflow_steward.records import db
from mlflow_steward.records.audit import AuditEntry, AuditLog
from tests.conftest import log_model_at, postgres_database
from tests.servers import free_port, mlflow_server

pytestmark = pytest.mark.slow

STEWARD = str(Path(sys.executable).with_name("steward"))

CONFIG = textwrap.dedent("""\
    policies:
      - use: require-signature
      - use: required-tags
        when: {action: set_alias, alias: production}
        with: {tags: [owner]}
      - use: metric-threshold
        when: {action: set_alias, alias: production}
        with: {metric: accuracy, min: 0.8}
      - use: approvals
        when: {alias: production}
        with: {count: 1}
      - use: approvals
        id: demotion-approvals
        when: {action: delete_alias, alias: production}
        with: {count: 1}
    """)

API = "/api/2.0/mlflow"
AJAX = "/ajax-api/2.0/mlflow"
STEWARD_API = "/api/2.0/steward/approvals"


@dataclass
class Server:
    url: str
    backend: str
    artifacts: Path
    models: dict[str, Any] = field(default_factory=dict)

    def call(
        self, method: str, path: str, body: Any = None, actor: str | None = "mallory"
    ) -> requests.Response:
        headers = {"X-Forwarded-User": actor} if actor else {}
        return requests.request(method, self.url + path, json=body, headers=headers, timeout=60)

    def ok(self, method: str, path: str, body: Any = None, actor: str = "alice") -> Any:
        response = self.call(method, path, body, actor)
        assert response.status_code == 200, (path, body, response.status_code, response.text)
        return response.json()

    def register(self, name: str, logged: Any, actor: str = "alice") -> str:
        mv = self.ok(
            "POST",
            f"{API}/model-versions/create",
            {
                "name": name,
                "source": f"models:/{logged.model_id}",
                "run_id": logged.run_id,
                "model_id": logged.model_id,
            },
            actor,
        )["model_version"]
        self.ok(
            "POST",
            f"{API}/model-versions/set-tag",
            {"name": name, "version": mv["version"], "key": "owner", "value": actor},
            actor,
        )
        return str(mv["version"])

    def review(
        self,
        verdict: str,
        name: str,
        version: str,
        actor: str,
        alias: str = "production",
        **extra: Any,
    ) -> requests.Response:
        body = {"name": name, "version": version, "alias": alias, **extra}
        return self.call("POST", f"{STEWARD_API}/{verdict}", body, actor)

    def snapshot(self) -> dict[str, Any]:
        """Everything a client can see of the registry, read straight from the database."""
        client = MlflowClient(tracking_uri=self.backend, registry_uri=self.backend)
        models = {}
        for rm in client.search_registered_models(max_results=1000):
            full = client.get_registered_model(rm.name)
            versions = {
                str(v.version): (v.current_stage, dict(v.tags), v.source)
                for v in client.search_model_versions(f"name = '{rm.name}'")
            }
            models[rm.name] = (
                full.creation_timestamp,
                dict(full.tags),
                {k: str(v) for k, v in full.aliases.items()},
                versions,
            )
        return models

    def audit(self) -> AuditLog:
        return AuditLog(db.get_engine(self.backend))

    def last(self, action: str) -> AuditEntry:
        """The newest audit entry of ``action``: the one the test's own request wrote (an
        entry of another action may land after it: MLflow's prompt registry, used by an earlier
        test of this module, can write a registered-model tag late)."""
        return next(
            e for e in self.audit().entries(newest_first=True, limit=20) if e.action == action
        )


@contextlib.contextmanager
def _backend(request: pytest.FixtureRequest, root: Path) -> Iterator[str]:
    """The module's database: a SQLite file, or a fresh PostgreSQL database dropped after."""
    if request.param == "sqlite":
        yield f"sqlite:///{root / 'mlflow.db'}"
    else:
        with postgres_database() as uri:
            yield uri


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def server(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp(f"attack-{request.param}")
    config = root / "steward.yaml"
    config.write_text(CONFIG)
    artifacts = root / "artifacts"
    env = {"MLFLOW_STEWARD_AUTH": "trusted-header"}
    with (
        _backend(request, root) as backend,
        mlflow_server(backend, root, config=config, env=env, artifacts=artifacts) as proc,
    ):
        s = Server(proc.url, backend, artifacts)
        s.models = {
            "good1": log_model_at(proc.url),
            "good2": log_model_at(proc.url),
            "good3": log_model_at(proc.url),
            "unsigned": log_model_at(proc.url, signature=False),
        }
        s.ok("POST", f"{API}/registered-models/create", {"name": "fraud"})
        assert s.register("fraud", s.models["good1"]) == "1"
        assert s.register("fraud", s.models["good2"]) == "2"
        assert s.review("approve", "fraud", "1", "bob").status_code == 200
        s.ok(
            "POST",
            f"{API}/registered-models/alias",
            {"name": "fraud", "alias": "production", "version": "1"},
            "carol",
        )
        yield s


def _refused(response: requests.Response, codes: tuple[int, ...] = (403,)) -> dict[str, Any]:
    assert response.status_code in codes, (response.status_code, response.text[:500])
    body = response.json()
    assert body.get("error_code"), body
    assert body.get("message"), body
    return body


def _unchanged(server: Server, before: dict[str, Any]) -> None:
    assert server.snapshot() == before


# -- 1. prompt markers ----------------------------------------------------------------------------

MARKER_KEYS = [
    "mlflow.prompt.is_prompt",
    "mlflow.prompt.text",
    "_mlflow_prompt_type",
    "MLFLOW.PROMPT.IS_PROMPT",
    " mlflow.prompt.text",
    "_MLflow_Prompt_Type",
]
MARKER_ROUTES = [
    ("POST", f"{API}/model-versions/set-tag", {"name": "fraud", "version": "2", "value": "true"}),
    ("POST", f"{API}/registered-models/set-tag", {"name": "fraud", "value": "false"}),
    ("DELETE", f"{API}/model-versions/delete-tag", {"name": "fraud", "version": "1"}),
    ("DELETE", f"{API}/registered-models/delete-tag", {"name": "fraud"}),
    ("POST", f"{AJAX}/model-versions/set-tag", {"name": "fraud", "version": "2", "value": "x"}),
]


@pytest.mark.parametrize("key", MARKER_KEYS)
@pytest.mark.parametrize(("method", "path", "body"), MARKER_ROUTES)
def test_prompt_markers_cannot_be_written_after_creation(server, key, method, path, body):
    before = server.snapshot()
    seq = server.audit().verify().entries
    response = server.call(method, path, {**body, "key": key})
    refusal = _refused(response, (400, 403))
    if response.status_code == 403:
        assert "[protect-prompt-markers]" in refusal["message"]
        action = ("delete_" if method == "DELETE" else "set_") + (
            "model_version_tag" if "model-versions" in path else "registered_model_tag"
        )
        last = server.last(action)
        assert last.seq > seq
        assert last.decision == "refused"
    _unchanged(server, before)


@pytest.mark.parametrize("key", MARKER_KEYS[:3])
def test_a_model_version_cannot_be_registered_carrying_prompt_markers(server, key):
    before = server.snapshot()
    logged = server.models["good3"]
    response = server.call(
        "POST",
        f"{API}/model-versions/create",
        {
            "name": "fraud",
            "source": f"models:/{logged.model_id}",
            "model_id": logged.model_id,
            "tags": [{"key": key, "value": "true"}],
        },
        "alice",
    )
    # MLflow's own handler refuses some prompt tags with a non-prompt source (400) before the
    # store; what reaches the store is refused by steward.
    refusal = _refused(response, (400, 403))
    if response.status_code == 403:
        assert "[protect-prompt-markers]" in refusal["message"]
    _unchanged(server, before)


def test_a_model_version_tagged_as_prompt_is_still_judged_as_a_model(server):
    """What the 0.1.0 attack did: with the markers refused, the unapproved v2 stays refused by
    the model policies (approvals named, not skipped), by plain clients and raw REST alike."""
    before = server.snapshot()
    for key in MARKER_KEYS[:3]:
        _refused(
            server.call(
                "POST",
                f"{API}/model-versions/set-tag",
                {"name": "fraud", "version": "2", "key": key, "value": "x"},
            )
        )
    refusal = _refused(
        server.call(
            "POST",
            f"{API}/registered-models/alias",
            {"name": "fraud", "alias": "production", "version": "2"},
            "carol",
        )
    )
    assert "[approvals] 0 of 1 required approvals" in refusal["message"]
    _unchanged(server, before)


def test_a_prompt_model_cannot_carry_real_artifacts_past_model_policies(server):
    """A registered model created as a prompt (as MLflow's register_prompt does) with an
    unsigned model registered into it: a version with artifacts is a model, and
    require-signature refuses it."""
    server.ok(
        "POST",
        f"{API}/registered-models/create",
        {"name": "sneaky-prompt", "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]},
    )
    before = server.snapshot()
    logged = server.models["unsigned"]
    response = server.call(
        "POST",
        f"{API}/model-versions/create",
        {
            "name": "sneaky-prompt",
            "source": f"models:/{logged.model_id}",
            "model_id": logged.model_id,
            "tags": [{"key": "mlflow.prompt.text", "value": "hi"}],
        },
        "alice",
    )
    assert "[require-signature] the model has no signature" in _refused(response)["message"]
    _unchanged(server, before)


def test_a_real_prompt_is_registered_and_judged_as_a_prompt(server):
    """MLflow's own prompt registry through the governed server: allowed, and the model
    policies (require-signature, which a prompt cannot meet) are not asked."""
    import mlflow

    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    try:
        prompt = mlflow.genai.register_prompt(name="greeting", template="Hello {{name}}")
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    assert str(prompt.version) == "1"
    entry = next(
        e
        for e in server.audit().entries(model="greeting", newest_first=True)
        if e.action == "create_model_version"
    )
    assert entry.decision == "allowed"
    assert "require-signature" not in {r["policy"] for r in entry.reasons}


# -- 2. version spellings -------------------------------------------------------------------------

ONE = ["01", " 1", "1 ", "+1", "0001", "+01", "\t1", "\u0661", "\uff11"]


@pytest.mark.parametrize("spelling", ONE)
def test_the_version_holding_production_cannot_be_deleted_under_another_spelling(server, spelling):
    before = server.snapshot()
    seq = server.audit().verify().entries
    response = server.call(
        "DELETE", f"{API}/model-versions/delete", {"name": "fraud", "version": spelling}
    )
    refusal = _refused(response)
    assert "[protect-aliases]" in refusal["message"]
    assert "models:/fraud/1" in refusal["message"]
    last = server.last("delete_model_version")
    assert last.seq > seq
    assert (last.version, last.decision) == ("1", "refused")
    assert last.details["raw_version"] == spelling
    _unchanged(server, before)


@pytest.mark.parametrize("spelling", ["02", "+2", " 2", "\uff12", "\u0662", "002"])
def test_an_unapproved_version_cannot_be_promoted_under_another_spelling(server, spelling):
    before = server.snapshot()
    response = server.call(
        "POST",
        f"{API}/registered-models/alias",
        {"name": "fraud", "alias": "production", "version": spelling},
        "carol",
    )
    assert "[approvals] 0 of 1 required approvals" in _refused(response)["message"]
    _unchanged(server, before)


@pytest.mark.parametrize(
    "spelling", ["1.0", "abc", "0x1", "1e0", "9" * 30, "--1", "1/2", "\u0661.\u0660"]
)
@pytest.mark.parametrize(
    ("method", "path", "extra"),
    [
        ("POST", f"{API}/registered-models/alias", {"alias": "production"}),
        ("DELETE", f"{API}/model-versions/delete", {}),
        ("POST", STEWARD_API + "/approve", {"alias": "production"}),
    ],
)
def test_a_version_mlflow_cannot_read_is_a_400(server, spelling, method, path, extra):
    before = server.snapshot()
    body = {"name": "fraud", "version": spelling, **extra}
    _refused(server.call(method, path, body, "bob"), (400, 404))
    _unchanged(server, before)


@pytest.mark.parametrize("spelling", ["02", " 2", "+2", "\uff12"])
@pytest.mark.parametrize("actor", ["alice", "Alice", "ALICE"])
def test_the_registrant_cannot_approve_her_own_version_under_any_spelling(server, spelling, actor):
    before = server.snapshot()
    response = server.review("approve", "fraud", spelling, actor)
    assert "trained or registered this version" in _refused(response)["message"]
    _unchanged(server, before)


def test_reviews_and_the_audit_log_record_the_canonical_version(server):
    assert server.review("request", "fraud", "\uff12", "dave").status_code == 200
    reviews = server.ok("GET", f"{STEWARD_API}?name=fraud")["reviews"]
    request = [r for r in reviews if r["verdict"] == "request"][-1]
    assert request["version"] == "2"
    entry = server.last("request_approval")
    assert (entry.version, entry.actor) == ("2", "dave")
    # A requester cannot then approve under another spelling of the version or of her name.
    refusal = _refused(server.review("approve", "fraud", "02", "DAVE"))
    assert "requested this promotion" in refusal["message"]


# -- 3. approvals bound to what was reviewed ------------------------------------------------------


def test_an_approval_does_not_survive_delete_and_create_again(server):
    server.ok("POST", f"{API}/registered-models/create", {"name": "churn"})
    assert server.register("churn", server.models["good1"]) == "1"
    assert server.review("approve", "churn", "1", "bob").status_code == 200
    server.ok("DELETE", f"{API}/registered-models/delete", {"name": "churn"})
    server.ok("POST", f"{API}/registered-models/create", {"name": "churn"})
    assert server.register("churn", server.models["good3"]) == "1"  # another artifact, as v1
    before = server.snapshot()
    response = server.call(
        "POST",
        f"{API}/registered-models/alias",
        {"name": "churn", "alias": "production", "version": "1"},
        "carol",
    )
    message = _refused(response)["message"]
    assert "0 of 1 required approvals" in message
    assert "1 approval(s) of an earlier model named 'churn'" in message
    _unchanged(server, before)


def test_an_approval_does_not_pass_to_a_model_renamed_onto_the_name(server):
    server.ok("POST", f"{API}/registered-models/create", {"name": "risk"})
    assert server.register("risk", server.models["good1"]) == "1"
    assert server.review("approve", "risk", "1", "bob").status_code == 200
    server.ok("POST", f"{API}/registered-models/create", {"name": "risk-shadow"})
    assert server.register("risk-shadow", server.models["good3"]) == "1"
    server.ok("DELETE", f"{API}/registered-models/delete", {"name": "risk"})
    server.ok(
        "POST", f"{API}/registered-models/rename", {"name": "risk-shadow", "new_name": "risk"}
    )
    before = server.snapshot()
    response = server.call(
        "POST",
        f"{API}/registered-models/alias",
        {"name": "risk", "alias": "production", "version": "1"},
        "carol",
    )
    message = _refused(response)["message"]
    assert "earlier model named 'risk'" in message
    _unchanged(server, before)


def test_a_rename_keeps_the_reviews_of_the_renamed_model(server):
    server.ok("POST", f"{API}/registered-models/create", {"name": "kept"})
    assert server.register("kept", server.models["good2"]) == "1"
    assert server.review("approve", "kept", "1", "bob").status_code == 200
    server.ok("POST", f"{API}/registered-models/rename", {"name": "kept", "new_name": "kept-2"})
    server.ok(
        "POST",
        f"{API}/registered-models/alias",
        {"name": "kept-2", "alias": "production", "version": "1"},
        "carol",
    )


def _artifact_path(server: Server, name: str, version: str) -> str:
    """The proxied artifact path of a version's logged model (``mlflow-artifacts:/...``)."""
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    source = client.get_model_version(name, version).source
    location = client.get_logged_model(source.removeprefix("models:/")).artifact_location
    assert location.startswith("mlflow-artifacts:/"), location
    return location.removeprefix("mlflow-artifacts:/").strip("/")


def test_replaced_artifacts_are_refused_for_promotion_review_and_deploy(server, tmp_path):
    server.ok("POST", f"{API}/registered-models/create", {"name": "swapped"})
    assert server.register("swapped", server.models["good2"]) == "1"
    mv = MlflowClient(tracking_uri=server.url, registry_uri=server.url).get_model_version(
        "swapped", "1"
    )
    assert mv.tags[DIGEST_TAG].startswith("sha256:")
    assert server.review("approve", "swapped", "1", "bob").status_code == 200
    # Replace requirements.txt through the server's artifact proxy, after the approval.
    path = _artifact_path(server, "swapped", "1")
    put = requests.put(
        f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{path}/requirements.txt",
        data=b"scikit-learn\nnumpy\nevil-package==6.6.6\n",
        timeout=30,
    )
    assert put.status_code == 200, put.text
    before = server.snapshot()
    promotion = server.call(
        "POST",
        f"{API}/registered-models/alias",
        {"name": "swapped", "alias": "production", "version": "1"},
        "carol",
    )
    message = _refused(promotion)["message"]
    assert "[content-digest]" in message
    assert "requirements.txt (changed)" in message
    assert "reviewed other artifacts" in message  # bob's approval no longer counts either
    review = _refused(server.review("approve", "swapped", "1", "erin"))
    assert "requirements.txt (changed)" in review["message"]
    _unchanged(server, before)

    # `steward verify` names the file; a deploy is refused naming it, before anything starts.
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "MLFLOW_STEWARD_ACTOR": "carol"}
    env.pop("MLFLOW_STEWARD_CONFIG", None)
    registry = f"steward+{server.backend}"
    verify = subprocess.run(
        [STEWARD, "--registry-uri", registry, "verify", "models:/swapped/1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert verify.returncode == 1
    assert "requirements.txt (changed)" in verify.stderr
    config = tmp_path / "steward.yaml"
    config.write_text(CONFIG)
    deploy = subprocess.run(
        [
            STEWARD,
            "--config",
            str(config),
            "--registry-uri",
            registry,
            "deploy",
            "create",
            "swapped-prod",
            "--model-uri",
            "models:/swapped/1",
            "--target",
            "steward-onprem",
            "-C",
            f"port={free_port()}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert deploy.returncode == 1, deploy.stdout + deploy.stderr
    assert "[content-digest]" in deploy.stderr
    assert "requirements.txt (changed)" in deploy.stderr
    _unchanged(server, before)


def test_a_promotions_approval_does_not_approve_the_demotion(server):
    server.ok("POST", f"{API}/registered-models/create", {"name": "demo"})
    assert server.register("demo", server.models["good1"]) == "1"
    assert server.review("approve", "demo", "1", "bob").status_code == 200
    server.ok(
        "POST",
        f"{API}/registered-models/alias",
        {"name": "demo", "alias": "production", "version": "1"},
        "carol",
    )
    before = server.snapshot()
    for route in (API, AJAX):
        response = server.call(
            "DELETE", f"{route}/registered-models/alias", {"name": "demo", "alias": "production"}
        )
        message = _refused(response)["message"]
        assert "[demotion-approvals] 0 of 1 required approvals for @production (delete_alias)" in (
            message
        )
    _unchanged(server, before)
    # The demotion reviewed as such: allowed.
    reviewed = server.review("approve", "demo", "1", "bob", action="delete_alias")
    assert reviewed.status_code == 200, reviewed.text
    server.ok(
        "DELETE",
        f"{API}/registered-models/alias",
        {"name": "demo", "alias": "production"},
        "carol",
    )
    assert "production" not in server.snapshot()["demo"][2]


def test_a_review_of_an_unknown_action_is_a_400(server):
    before = server.snapshot()
    response = server.review("approve", "fraud", "2", "bob", action="delete_registered_model")
    _refused(response, (400,))
    _unchanged(server, before)


def test_the_audit_chain_verifies_after_every_attempt(server):
    result = server.audit().verify()
    assert result.ok, result.problem
    assert result.entries > 50


# -- 5. workspaces --------------------------------------------------------------------------------


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def workspaces(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Server]:
    """A server with MLflow's workspaces on, and a model ``fraud`` (v1) in each of two."""
    import mlflow

    root = tmp_path_factory.mktemp(f"workspaces-{request.param}")
    config = root / "steward.yaml"
    config.write_text(CONFIG)
    env = {"MLFLOW_STEWARD_AUTH": "trusted-header"}
    with (
        _backend(request, root) as backend,
        mlflow_server(
            backend,
            root,
            config=config,
            env=env,
            artifacts=root / "artifacts",
            extra_args=("--enable-workspaces",),
        ) as proc,
    ):
        s = Server(proc.url, backend, root / "artifacts")
        client = MlflowClient(tracking_uri=proc.url)
        for name in ("team-a", "team-b"):
            client.create_workspace(name)
            # set_workspace and set_experiment write environment variables (for child threads):
            # put back what was there, or the next tests would look for this experiment.
            saved = {k: os.environ.get(k) for k in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_WORKSPACE")}
            mlflow.set_workspace(name)
            mlflow.set_tracking_uri(proc.url)
            try:
                # Experiments belong to workspaces too: the default one is not in either.
                mlflow.set_experiment(f"experiments-of-{name}")
                s.models[name] = log_model_at(proc.url)
            finally:
                mlflow.set_workspace(None)
                mlflow.set_tracking_uri(None)
                mlflow.tracking.fluent._active_experiment_id = None
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
        yield s


def _in(server: Server, workspace: str, method: str, path: str, body: Any, actor: str):
    headers = {"X-Forwarded-User": actor, "X-MLFLOW-WORKSPACE": workspace}
    return requests.request(method, server.url + path, json=body, headers=headers, timeout=60)


def test_reviews_refusals_and_audit_never_cross_workspaces(workspaces):
    s = workspaces
    for ws in ("team-a", "team-b"):
        logged = s.models[ws]
        for method, path, body in (
            ("POST", f"{API}/registered-models/create", {"name": "fraud"}),
            (
                "POST",
                f"{API}/model-versions/create",
                {
                    "name": "fraud",
                    "source": f"models:/{logged.model_id}",
                    "run_id": logged.run_id,
                    "model_id": logged.model_id,
                },
            ),
            (
                "POST",
                f"{API}/model-versions/set-tag",
                {"name": "fraud", "version": "1", "key": "owner", "value": "alice"},
            ),
        ):
            response = _in(s, ws, method, path, body, "alice")
            assert response.status_code == 200, (ws, path, response.text)
    review = {"name": "fraud", "version": "1", "alias": "production"}
    promote = {"name": "fraud", "alias": "production", "version": "1"}
    # bob approves in team-a: it counts there, not in team-b.
    assert _in(s, "team-a", "POST", f"{STEWARD_API}/approve", review, "bob").status_code == 200
    refused = _in(s, "team-b", "POST", f"{API}/registered-models/alias", promote, "carol")
    assert "0 of 1 required approvals" in _refused(refused)["message"]
    # dave rejects in team-b: it blocks there, not in team-a.
    assert _in(s, "team-b", "POST", f"{STEWARD_API}/reject", review, "dave").status_code == 200
    allowed = _in(s, "team-a", "POST", f"{API}/registered-models/alias", promote, "carol")
    assert allowed.status_code == 200, allowed.text
    still = _in(s, "team-b", "POST", f"{API}/registered-models/alias", promote, "carol")
    assert "rejected for @production by dave" in _refused(still)["message"]
    # Each workspace lists its own reviews only.
    for ws, expected in (("team-a", {("approve", "bob")}), ("team-b", {("reject", "dave")})):
        listed = _in(s, ws, "GET", f"{STEWARD_API}?name=fraud", None, "erin").json()["reviews"]
        assert {(r["verdict"], r["actor"]) for r in listed} == expected
        assert {r["workspace"] for r in listed} == {ws}
    # The audit log records each entry's workspace, and still verifies.
    log = s.audit()
    by_workspace = {
        (e.workspace, e.action, e.decision, e.actor)
        for e in log.entries(model="fraud")
        if e.action in ("approve", "reject", "set_alias")
    }
    assert by_workspace == {
        ("team-a", "approve", "allowed", "bob"),
        ("team-a", "set_alias", "allowed", "carol"),
        ("team-b", "set_alias", "refused", "carol"),
        ("team-b", "reject", "allowed", "dave"),
    }
    result = log.verify()
    assert result.ok, result.problem
    # Alias history is kept per workspace.
    from mlflow_steward.records import history

    engine = db.get_engine(s.backend)
    assert [h.version for h in history.history(engine, "fraud", "production", "team-a")] == ["1"]
    assert history.history(engine, "fraud", "production", "team-b") == []


# -- 6. server-side sources -----------------------------------------------------------------------


def test_copies_and_models_sources_are_decided_on_the_source_versions_facts(server):
    """copy_model_version registers from ``models:/NAME/VERSION``: steward reads the facts of
    the version it names (its MLmodel, its artifacts' digest) through the registry and the
    server's artifact repository, instead of refusing every copy."""
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    copy = client.copy_model_version("models:/fraud@production", "fraud-copy")
    source_digest = client.get_model_version("fraud", "1").tags[DIGEST_TAG]
    assert client.get_model_version("fraud-copy", copy.version).tags[DIGEST_TAG] == source_digest
    # A version registered without steward (straight into the database) with an unsigned model:
    # a copy of it is refused by require-signature, on that version's real facts.
    plain = MlflowClient(tracking_uri=server.backend, registry_uri=server.backend)
    unsigned = server.models["unsigned"]
    plain.create_registered_model("legacy")
    import mlflow

    mlflow.set_tracking_uri(server.backend)  # MLflow's SQL store resolves models:/ globally
    plain.create_model_version(
        "legacy", f"models:/{unsigned.model_id}", run_id=unsigned.run_id, model_id=unsigned.model_id
    )
    mlflow.set_tracking_uri(None)
    before = server.snapshot()
    for uri in ("models:/legacy/1", "models:/legacy/01"):
        response = server.call(
            "POST",
            f"{API}/model-versions/create",
            {"name": "fraud-copy", "source": uri},
            "alice",
        )
        assert "[require-signature] the model has no signature" in _refused(response)["message"]
    _unchanged(server, before)
