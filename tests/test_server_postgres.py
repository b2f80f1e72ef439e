"""Governed servers on PostgreSQL: the walkthrough, and two servers on one database under load
with one of them killed midway, where every answer is the one the policies give (no 5xx, and no
403 other than the refusals of metric-threshold and approvals)."""

from __future__ import annotations

import random
import re
import textwrap
import threading
import time
from collections import Counter

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_steward.governance.store import build_governed_store
from mlflow_steward.records import db
from mlflow_steward.records.audit import AuditLog
from tests.conftest import EXAMPLE_CONFIG, log_model_at
from tests.servers import mlflow_server
from tests.test_postgres import WALKTHROUGH_ENTRIES

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LOAD_SECONDS = 60
CLIENTS = 16


def test_walkthrough_on_a_postgres_server(postgres_uri, tmp_path):
    config = tmp_path / "steward.yaml"
    config.write_text(EXAMPLE_CONFIG)
    with mlflow_server(postgres_uri, tmp_path, config=config) as server:
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        unsigned, good, weak = (
            log_model_at(server.url, signature=False),
            log_model_at(server.url),
            log_model_at(server.url, accuracy=0.5),
        )
        mlflow.set_tracking_uri(server.url)
        try:
            with pytest.raises(MlflowException) as err:
                mlflow.register_model(unsigned.uri, "fraud")
            assert "[require-signature]" in err.value.message
            assert client.search_registered_models() == []
            v_good = str(mlflow.register_model(good.uri, "fraud").version)
            v_weak = str(mlflow.register_model(weak.uri, "fraud").version)
        finally:
            mlflow.set_tracking_uri(None)
        with pytest.raises(MlflowException, match=r"\[required-tags\]"):
            client.set_registered_model_alias("fraud", "production", v_good)
        client.set_model_version_tag("fraud", v_weak, "owner", "alice")
        with pytest.raises(MlflowException, match=r"\[metric-threshold\] accuracy=0.5"):
            client.set_registered_model_alias("fraud", "production", v_weak)
        client.set_model_version_tag("fraud", v_good, "owner", "alice")
        client.set_registered_model_alias("fraud", "production", v_good)
    log = AuditLog(db.get_engine(postgres_uri))
    result = log.verify()
    assert result.ok, result.problem
    # The same decisions as the embedded walkthrough, one entry each, and the promotion's
    # evidence (see WALKTHROUGH_ENTRIES).
    assert result.entries == len(WALKTHROUGH_ENTRIES) == 12
    assert [(e.action, e.decision) for e in log.entries()] == WALKTHROUGH_ENTRIES


CONFIG = EXAMPLE_CONFIG + textwrap.indent(
    textwrap.dedent("""\
    - use: approvals
      when: {alias: champion}
      with: {count: 1}
    """),
    "  ",
)


class Load:
    """16 clients promoting, approving and tagging through two servers for LOAD_SECONDS.

    A client sends each call to one of the servers (at random) and, when that server does not
    accept the connection (it was killed), to the other one.
    """

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.lock = threading.Lock()
        self.status: Counter[int] = Counter()
        self.server_errors: list[str] = []
        self.refused_connections: Counter[str] = Counter()
        self.stop = threading.Event()
        # (operation, version, HTTP status, message of a refusal) of every answered call
        self.answers: list[tuple[str, str, int, str]] = []

    def send(self, order: list[str], path: str, actor: str, payload: dict) -> None:
        op = "approve" if "approvals" in path else payload.get("alias", "tag")
        for url in order:
            try:
                response = requests.post(
                    url + path, json=payload, timeout=60, headers={"X-User": actor}
                )
            except requests.ConnectionError:
                with self.lock:
                    self.refused_connections[url] += 1
                continue
            with self.lock:
                self.status[response.status_code] += 1
                message = response.text[:600] if response.status_code != 200 else ""
                self.answers.append((op, payload["version"], response.status_code, message))
                if response.status_code >= 500:
                    self.server_errors.append(f"{path}: {response.text[:300]}")
            return

    def client(self, i: int) -> None:
        rng = random.Random(i)
        actor = f"client-{i}"
        while not self.stop.is_set():
            op = rng.choice(["production", "production", "champion", "approve", "tag"])
            version = str(rng.randint(1, 4))
            order = self.urls if rng.random() < 0.5 else self.urls[::-1]
            if op == "tag":
                self.send(
                    order,
                    "/api/2.0/mlflow/model-versions/set-tag",
                    actor,
                    {
                        "name": "fraud",
                        "version": version,
                        "key": f"seen-by-{i}",
                        "value": str(time.time()),
                    },
                )
            elif op == "approve":
                self.send(
                    order,
                    "/api/2.0/steward/approvals/approve",
                    actor,
                    {"name": "fraud", "version": version, "alias": "champion"},
                )
            else:
                self.send(
                    order,
                    "/api/2.0/mlflow/registered-models/alias",
                    actor,
                    {"name": "fraud", "alias": op, "version": version},
                )


def _assert_each_answer_is_the_policies(answers: list[tuple[str, str, int, str]]) -> None:
    """CONFIG on this registry: every version has its owner tag, v1-v3 logged accuracy 0.95 and
    v4 0.5; @champion needs one approval by someone else. So: tags and approvals are applied;
    @production is applied for v1-v3 and refused by metric-threshold alone for v4; @champion is
    applied or refused by approvals alone. Any other answer, a 403 because steward "could not
    decide" included, is wrong."""
    wrong = []
    for op, version, status, message in answers:
        refused_by = re.findall(r"\[([a-z][a-z-]*)\]", message)
        if op in ("tag", "approve") or (op == "production" and version != "4"):
            ok = status == 200
        elif op == "production":
            ok = status == 403 and refused_by == ["metric-threshold"] and "accuracy=0.5" in message
        else:
            ok = status == 200 or (status == 403 and refused_by == ["approvals"])
        if status == 403:
            ok = ok and "decide" not in message
        if not ok:
            wrong.append(f"{op} v{version}: HTTP {status} {message}")
    assert wrong == [], "\n".join(wrong[:10])
    assert {op for op, _, status, _ in answers if status == 403} >= {"production"}


def test_two_servers_one_database_sixteen_clients_one_server_killed(postgres_uri, tmp_path):
    config = tmp_path / "steward.yaml"
    config.write_text(CONFIG)
    env = {"MLFLOW_STEWARD_AUTH": "trusted-header", "MLFLOW_STEWARD_TRUSTED_HEADER": "X-User"}
    dir_a, dir_b = tmp_path / "a", tmp_path / "b"
    dir_a.mkdir()
    dir_b.mkdir()
    shared = dict(
        config=config,
        env=env,
        workers=2,
        artifacts=tmp_path / "artifacts",
    )
    with (
        mlflow_server(postgres_uri, dir_a, **shared) as a,
        mlflow_server(postgres_uri, dir_b, **shared) as b,
    ):
        setup = MlflowClient(tracking_uri=a.url, registry_uri=a.url)
        logged = [log_model_at(a.url) for _ in range(3)] + [log_model_at(a.url, accuracy=0.5)]
        setup.create_registered_model("fraud")
        for item in logged:
            setup.create_model_version(
                "fraud", f"models:/{item.model_id}", run_id=item.run_id, model_id=item.model_id
            )
        for version in "1234":
            setup.set_model_version_tag("fraud", version, "owner", "alice")
        # Shared state: an approval given on server A counts for a promotion on server B.
        approved = requests.post(
            f"{a.url}/api/2.0/steward/approvals/approve",
            json={"name": "fraud", "version": "1", "alias": "champion"},
            headers={"X-User": "reviewer"},
            timeout=30,
        )
        assert approved.status_code == 200, approved.text
        promoted = requests.post(
            f"{b.url}/api/2.0/mlflow/registered-models/alias",
            json={"name": "fraud", "alias": "champion", "version": "1"},
            headers={"X-User": "promoter"},
            timeout=30,
        )
        assert promoted.status_code == 200, promoted.text

        load = Load([a.url, b.url])
        threads = [
            threading.Thread(target=load.client, args=(i,), daemon=True) for i in range(CLIENTS)
        ]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(LOAD_SECONDS / 2)
        a.kill()  # SIGKILL to the supervisor and its workers, mid-load
        time.sleep(max(0.0, LOAD_SECONDS - (time.monotonic() - start)))
        load.stop.set()
        for thread in threads:
            thread.join(timeout=120)
        survivor_ok = requests.get(f"{b.url}/health", timeout=10).status_code == 200

    assert load.server_errors == [], load.server_errors[:5]
    assert survivor_ok
    assert load.status[200] > 100, load.status
    assert load.status[403] > 0, load.status  # version 4 (accuracy 0.5) is refused everywhere
    assert set(load.status) <= {200, 403}, load.status
    _assert_each_answer_is_the_policies(load.answers)
    assert load.refused_connections[b.url] == 0, "the survivor refused connections"

    # A write the killed server applied but could not record was recorded by the survivor's next
    # write on the model; `steward audit recover` finds nothing left.
    recovered = build_governed_store(f"steward+{postgres_uri}", postgres_uri).governor.recover_all()
    assert recovered == []
    engine = db.get_engine(postgres_uri)
    audit = AuditLog(engine)
    result = audit.verify()
    assert result.ok, result.problem
    registry = MlflowClient(tracking_uri=postgres_uri, registry_uri=postgres_uri)
    holders = {k: str(v) for k, v in registry.get_registered_model("fraud").aliases.items()}
    entries = audit.entries(model="fraud")
    for alias in ("production", "champion"):
        last = [
            e
            for e in entries
            if e.action == "set_alias" and e.alias == alias and e.outcome == "applied"
        ][-1]
        assert holders[alias] == last.version, (alias, holders, last)
    assert holders["production"] != "4"


def test_a_server_whose_database_is_gone_refuses_with_403_never_5xx(postgres_uri, tmp_path):
    """docs/server.md: "If steward itself cannot decide (its database is unreachable) the action
    is refused with 403 as well: governance fails closed and never answers a decision with a
    5xx". The database stops accepting connections (and its sessions are ended) under a running
    governed server; every registry write is then a JSON 403 that says why, and nothing is
    written."""
    import sqlalchemy as sa

    from tests.conftest import PG_ADMIN_URI

    config = tmp_path / "steward.yaml"
    config.write_text(EXAMPLE_CONFIG)
    database = postgres_uri.rsplit("/", 1)[1]
    admin = sa.create_engine(PG_ADMIN_URI, isolation_level="AUTOCOMMIT")
    with mlflow_server(postgres_uri, tmp_path, config=config) as server:
        good = log_model_at(server.url)
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        client.create_registered_model("fraud")
        client.create_model_version(
            "fraud", f"models:/{good.model_id}", run_id=good.run_id, model_id=good.model_id
        )
        client.set_model_version_tag("fraud", "1", "owner", "alice")
        entries_before = AuditLog(db.get_engine(postgres_uri)).verify().entries
        db.dispose_engines()
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
                )
            writes = [
                ("POST", "registered-models/alias", {"alias": "production", "version": "1"}),
                ("POST", "model-versions/set-tag", {"version": "1", "key": "k", "value": "v"}),
                ("POST", "registered-models/rename", {"new_name": "fraud2"}),
                ("DELETE", "model-versions/delete", {"version": "1"}),
                ("DELETE", "registered-models/delete", {}),
                ("POST", "registered-models/create", {"name": "churn"}),
            ]
            for method, path, body in writes:
                response = requests.request(
                    method,
                    f"{server.url}/api/2.0/mlflow/{path}",
                    json={"name": "fraud", **body},
                    timeout=60,
                )
                assert response.status_code == 403, (path, response.status_code, response.text)
                answer = response.json()
                assert answer["error_code"] == "PERMISSION_DENIED", answer
                assert "could not decide" in answer["message"], answer
                assert "fails closed" in answer["message"], answer
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            admin.dispose()
        # The database is back: nothing was written while it was gone, and the server decides
        # again (this promotion is allowed).
        registry = MlflowClient(tracking_uri=postgres_uri, registry_uri=postgres_uri)
        assert registry.get_registered_model("fraud").aliases == {}
        assert "k" not in registry.get_model_version("fraud", "1").tags
        client.set_registered_model_alias("fraud", "production", "1")
    result = AuditLog(db.get_engine(postgres_uri)).verify()
    assert result.ok, result.problem
    assert result.entries == entries_before + 2  # the promotion and its evidence
