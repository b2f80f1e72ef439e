"""A process killed in the middle of a governed write.

On MLflow's SQL store (the usual case) the write and its audit entry are one transaction, so a
death between them leaves neither. Where the write cannot join steward's transaction (another
store, a deployment), it is recorded later, checked against the registry, by the next governed
write on the model or `steward audit recover`: interrupted_worker.py (which dies with
``os._exit``) takes that path with joining switched off; a deploy, whose work is outside the
database, takes it for real (interrupted_deploy_worker.py, stopped with SIGKILL).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from mlflow_steward.cli.main import cli
from mlflow_steward.records import db, history, pending_writes
from mlflow_steward.records.audit import AuditLog
from tests.interrupted_worker import DIED

WORKER = str(Path(__file__).with_name("interrupted_worker.py"))


def die_during(workspace, when: str, action: str, *args: str, join: bool = False) -> None:
    env = {**workspace.env(), "PYTHONPATH": str(Path(__file__).parents[1])}
    env["STEWARD_TEST_JOIN"] = "1" if join else "0"
    proc = subprocess.run(
        [sys.executable, WORKER, when, action, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == DIED, proc.stderr[-3000:]


def cli_ok(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def audit(workspace) -> AuditLog:
    return AuditLog(db.get_engine(workspace.db_uri))


@pytest.fixture
def fraud(workspace, log_model):
    """fraud v1 (production, owner alice) and v2 (owner alice)."""
    for _ in range(2):
        mlflow.register_model(log_model().uri, "fraud")
    client = workspace.client()
    for version in ("1", "2"):
        client.set_model_version_tag("fraud", version, "owner", "alice")
    client.set_registered_model_alias("fraud", "production", "1")
    return client


def test_killed_between_the_write_and_its_entry_in_one_transaction_leaves_neither(workspace, fraud):
    log = audit(workspace)
    before = log.entries(model="fraud")
    die_during(
        workspace,
        "after-write",
        "set_registered_model_alias",
        "fraud",
        "production",
        "2",
        join=True,
    )
    plain = workspace.plain_client()
    assert plain.get_model_version_by_alias("fraud", "production").version == 1
    assert log.entries(model="fraud") == before
    assert pending_writes.pending(log.engine) == []
    result = CliRunner().invoke(cli, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "interrupted" not in result.output
    # The database is not left locked: the next write goes through.
    fraud.set_registered_model_alias("fraud", "production", "2")
    assert plain.get_model_version_by_alias("fraud", "production").version == 2


def test_killed_after_the_write_is_recorded_as_applied_by_the_next_write(workspace, fraud):
    die_during(workspace, "after-write", "set_registered_model_alias", "fraud", "production", "2")
    plain = workspace.plain_client()
    assert plain.get_model_version_by_alias("fraud", "production").version == 2
    log = audit(workspace)
    # the last decision, before the evidence of v1's promotion (builtin.evidence)
    *_, last, evidence = log.entries(model="fraud")
    assert (last.action, last.alias, last.version) == ("set_alias", "production", "1")
    assert evidence.action == "record_evidence"
    [pending] = pending_writes.pending(log.engine, "fraud")
    assert (pending.action, pending.version, pending.actor) == ("set_alias", "2", "tester")

    result = CliRunner().invoke(cli, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "1 interrupted write(s) not on the log yet" in result.output
    assert "set_alias on fraud by tester" in result.output

    fraud.set_model_version_tag("fraud", "2", "reviewed", "yes")  # the next governed write
    *_, recovered, tag = log.entries(model="fraud")
    assert (recovered.action, recovered.version, recovered.outcome) == ("set_alias", "2", "applied")
    assert recovered.details["recovered"]["interrupted"] == pending.ts
    assert recovered.actor == "tester"
    assert [r["policy"] for r in recovered.reasons] == [r["policy"] for r in pending.reasons]
    assert tag.action == "set_model_version_tag"
    assert pending_writes.pending(log.engine) == []
    assert log.verify().ok
    # The alias history has the move, so a rollback goes back to version 1.
    moves = history.history(log.engine, "fraud", "production")
    assert [(m.version, m.previous_version) for m in moves] == [("1", None), ("2", "1")]
    cli_ok("rollback", "fraud", "--alias", "production")
    assert plain.get_model_version_by_alias("fraud", "production").version == 1


def test_killed_before_the_write_is_recorded_as_failed(workspace, fraud):
    die_during(workspace, "before-write", "set_registered_model_alias", "fraud", "production", "2")
    assert workspace.plain_client().get_model_version_by_alias("fraud", "production").version == 1
    out = cli_ok("audit", "recover")
    assert "recovered 1 interrupted write(s)" in out
    last = audit(workspace).entries(model="fraud")[-1]
    assert (last.action, last.version) == ("set_alias", "2")
    assert last.outcome.startswith("failed: interrupted")
    assert [m.version for m in history.history(audit(workspace).engine, "fraud")] == ["1"]
    assert "recovered 0 interrupted write(s)" in cli_ok("audit", "recover")


def test_killed_creating_a_version_finds_the_version_it_made(workspace, fraud, log_model):
    source = log_model()
    die_during(
        workspace,
        "after-write",
        "create_model_version",
        "fraud",
        f"models:/{source.model_id}",
        source.run_id,
    )
    assert workspace.plain_client().get_model_version("fraud", "3").run_id == source.run_id
    cli_ok("audit", "recover")
    entry = audit(workspace).entries(model="fraud")[-1]
    assert (entry.action, entry.version, entry.outcome) == ("create_model_version", "3", "applied")
    out = json.loads(cli_ok("audit", "verify", "--json"))
    assert out["ok"]
    assert out["interrupted_writes"] == 0


def test_killed_tagging_before_the_write(workspace, fraud):
    die_during(workspace, "before-write", "set_model_version_tag", "fraud", "2", "team", "risk")
    cli_ok("audit", "recover")
    entry = audit(workspace).entries(model="fraud")[-1]
    assert entry.action == "set_model_version_tag"
    assert entry.outcome.startswith("failed: interrupted")
    assert "team" not in workspace.plain_client().get_model_version("fraud", "2").tags


def test_a_deploy_killed_by_sigkill_mid_step_is_recovered_by_the_next_write(workspace, fraud):
    """A deployment's work is outside the database, so its governed step commits a pending row
    before it. A `DeploymentHost.create` process is killed with SIGKILL at a known step (its
    before-deploy hook, after the decision): the next governed write on the model records the
    interrupted deploy (its effect cannot be read back: `unknown`), and the audit chain and the
    deployment table stay consistent."""
    import os
    import signal
    import time

    marker = workspace.root / "in-the-hook"
    env = {**workspace.env(), "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("interrupted_deploy_worker.py")),
            str(marker),
            "rack-1",
            "models:/fraud@production",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), proc.stderr.read()[-3000:] if proc.poll() is not None else ""
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = audit(workspace)
    [pending] = pending_writes.pending(log.engine, "fraud")
    assert (pending.action, pending.version, pending.actor) == ("deploy", "1", "tester")
    assert pending.details["deployment"] == "rack-1"
    verified = CliRunner().invoke(cli, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "1 interrupted write(s) not on the log yet" in verified.output

    fraud.set_model_version_tag("fraud", "2", "reviewed", "yes")  # the next governed write
    *_, recovered, tag = log.entries(model="fraud")
    assert (recovered.action, recovered.version) == ("deploy", "1")
    assert recovered.outcome.startswith("unknown: interrupted")
    assert recovered.details["deployment"] == "rack-1"
    assert recovered.details["recovered"]["interrupted"] == pending.ts
    assert tag.action == "set_model_version_tag"
    assert pending_writes.pending(log.engine) == []
    assert log.verify().ok
    from mlflow_steward.records.deployments import DeploymentStore

    assert DeploymentStore(log.engine).get("rack-1") is None  # killed before it was reserved
