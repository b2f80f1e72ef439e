"""The governed registry through plain MLflow clients on a real SQLite registry."""

from __future__ import annotations

import contextlib
import json
import sqlite3

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.exceptions import MlflowException

from mlflow_steward.cli.main import cli
from mlflow_steward.errors import RegistryURIError
from mlflow_steward.plugins.events import DIGEST_TAG


def refused(excinfo) -> str:
    assert excinfo.value.error_code == "PERMISSION_DENIED"
    return excinfo.value.message


def run_cli(*args: str, expect: int = 0):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


def test_register_without_signature_is_refused_and_leaves_nothing(workspace, log_model):
    unsigned = log_model(signature=False)
    with pytest.raises(MlflowException) as err:
        mlflow.register_model(unsigned.uri, "fraud")
    assert "[require-signature] the model has no signature" in refused(err)
    plain = workspace.plain_client()
    assert plain.search_registered_models("name = 'fraud'") == []
    assert plain.search_model_versions("name = 'fraud'") == []
    actions = [(e["action"], e["decision"]) for e in _audit_json(workspace)]
    assert actions == [
        ("create_registered_model", "allowed"),
        ("create_model_version", "refused"),
        ("delete_registered_model", "allowed"),
    ]


def test_explicit_empty_model_with_history_is_kept(workspace, log_model):
    client = workspace.client()
    client.create_registered_model("kept")
    client.set_registered_model_tag("kept", "team", "risk")
    with pytest.raises(MlflowException):
        mlflow.register_model(log_model(signature=False).uri, "kept")
    assert workspace.plain_client().get_registered_model("kept").tags == {"team": "risk"}


def test_issue_walkthrough_required_tags_metric_threshold_and_compliant(workspace, log_model):
    client = workspace.client()
    good = mlflow.register_model(log_model(accuracy=0.93).uri, "fraud")
    weak = mlflow.register_model(log_model(accuracy=0.5).uri, "fraud")

    with pytest.raises(MlflowException) as err:
        client.set_registered_model_alias("fraud", "production", good.version)
    message = refused(err)
    assert "[required-tags] missing tag owner on the version" in message
    assert "metric-threshold" not in message  # 0.93 passes

    client.set_model_version_tag("fraud", weak.version, "owner", "alice")
    with pytest.raises(MlflowException) as err:
        client.set_registered_model_alias("fraud", "production", weak.version)
    assert "[metric-threshold] accuracy=0.5 is below the minimum 0.8" in refused(err)

    plain = workspace.plain_client()
    assert plain.get_registered_model("fraud").aliases == {}

    client.set_model_version_tag("fraud", good.version, "owner", "alice")
    client.set_registered_model_alias("fraud", "production", good.version)
    assert plain.get_model_version_by_alias("fraud", "production").version == good.version

    run_cli("audit", "verify")
    decisions = [(e["action"], e["decision"]) for e in _audit_json(workspace)]
    assert decisions.count(("set_alias", "refused")) == 2
    assert decisions[-2:] == [("set_alias", "allowed"), ("record_evidence", "allowed")]


@contextlib.contextmanager
def workspace_db(workspace):
    conn = sqlite3.connect(workspace.root / "mlflow.db")
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def _audit_json(workspace):
    return json.loads(run_cli("audit", "log", "--json").output)


@pytest.mark.parametrize("column", ["actor", "decision", "reasons", "ts"])
def test_audit_verify_names_an_edited_entry(workspace, log_model, column):
    mlflow.register_model(log_model().uri, "fraud")
    workspace.client().set_model_version_tag("fraud", "1", "owner", "bob")
    run_cli("audit", "verify")
    conn = sqlite3.connect(workspace.root / "mlflow.db")
    with conn:
        conn.execute(f"UPDATE steward_audit SET {column} = {column} || 'x' WHERE seq = 2")
    conn.close()
    result = run_cli("audit", "verify", expect=1)
    assert "BROKEN at entry 2" in result.output
    assert "does not match its hash: it was edited" in result.output


def test_audit_verify_detects_deleted_and_reordered_entries(workspace, log_model):
    mlflow.register_model(log_model().uri, "fraud")
    client = workspace.client()
    for i in range(3):
        client.set_model_version_tag("fraud", "1", f"k{i}", "v")
    db_file = workspace.root / "mlflow.db"
    conn = sqlite3.connect(db_file)
    with conn:
        conn.execute("DELETE FROM steward_audit WHERE seq = 3")
    result = run_cli("audit", "verify", "--json", expect=1)
    assert json.loads(result.output)["bad_seq"] == 3
    with conn:  # put it back reordered: swap the contents of entries 4 and 5
        conn.execute("UPDATE steward_audit SET seq = -1 WHERE seq = 4")
        conn.execute("UPDATE steward_audit SET seq = 4 WHERE seq = 5")
        conn.execute("UPDATE steward_audit SET seq = 5 WHERE seq = -1")
    conn.close()
    result = run_cli("audit", "verify", "--json", expect=1)
    assert json.loads(result.output)["bad_seq"] == 3  # still the first problem


def test_audit_verify_detects_truncated_tail_and_export(workspace, log_model):
    mlflow.register_model(log_model().uri, "fraud")
    out = workspace.root / "audit.jsonl"
    run_cli("audit", "export", "--format", "jsonl", "--output", str(out))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["seq"] for e in lines] == [1, 2]
    assert lines[1]["prev_hash"] == lines[0]["hash"]
    conn = sqlite3.connect(workspace.root / "mlflow.db")
    with conn:
        conn.execute("DELETE FROM steward_audit WHERE seq = 2")
    conn.close()
    result = run_cli("audit", "verify", expect=1)
    assert "newest entries were deleted" in result.output


def test_reserved_tags_are_refused(workspace, log_model):
    mlflow.register_model(log_model().uri, "fraud")
    client = workspace.client()
    for call in (
        lambda: client.set_model_version_tag("fraud", "1", "steward.monitor.status", "ok"),
        lambda: client.set_registered_model_tag("fraud", "steward.x", "1"),
        lambda: client.delete_model_version_tag("fraud", "1", "steward.y"),
    ):
        with pytest.raises(MlflowException) as err:
            call()
        assert "[reserved-tags]" in refused(err)
    # Only steward's own tag, written at registration.
    assert workspace.plain_client().get_model_version("fraud", "1").tags.keys() == {DIGEST_TAG}


def test_policy_plugin_that_raises_refuses_naming_the_plugin(workspace, log_model):
    from mlflow_steward import hookimpl
    from mlflow_steward.config import parse_config
    from mlflow_steward.lifecycle.session import StewardSession
    from mlflow_steward.plugins.manager import create_plugin_manager
    from mlflow_steward.plugins.types import Policy

    class TeamPolicies:
        @hookimpl
        def steward_policies(self):
            def check(event, options):
                raise KeyError("risk_score")

            yield Policy(name="risk-review", check=check, description="needs risk score")

    mlflow.register_model(log_model().uri, "fraud")
    pm = create_plugin_manager(plugins=[TeamPolicies()], autoload=False)
    session = StewardSession(config=parse_config("policies: [risk-review]"), pm=pm)
    with pytest.raises(MlflowException) as err:
        session.promote("models:/fraud/1", alias="champion")
    message = refused(err)
    assert "[risk-review] policy raised KeyError" in message
    assert "TeamPolicies" in message
    assert workspace.plain_client().get_registered_model("fraud").aliases == {}


def test_check_promote_history_rollback_via_cli(workspace, log_model):
    workspace.write_config(
        "policies: [{use: metric-threshold, with: {metric: accuracy, min: 0.8}}]\n"
    )
    for acc in (0.85, 0.9, 0.5):
        mlflow.register_model(log_model(accuracy=acc).uri, "fraud")
    ok = run_cli("check", "models:/fraud/2", "--to", "production", "--json")
    assert json.loads(ok.output)["allowed"] is True
    bad = run_cli("check", "models:/fraud/3", "--to", "production", expect=1)
    assert "FAIL  metric-threshold: accuracy=0.5 is below the minimum 0.8" in bad.output
    assert workspace.plain_client().get_registered_model("fraud").aliases == {}  # dry run

    run_cli("promote", "models:/fraud/1", "--to", "production")
    run_cli("promote", "models:/fraud/2", "--to", "production")
    result = CliRunner().invoke(cli, ["promote", "models:/fraud/3", "--to", "production"])
    assert result.exit_code == 1
    plain = workspace.plain_client()
    assert str(plain.get_model_version_by_alias("fraud", "production").version) == "2"

    run_cli("rollback", "fraud", "--alias", "production")
    assert str(plain.get_model_version_by_alias("fraud", "production").version) == "1"
    history = json.loads(run_cli("history", "fraud", "--alias", "production", "--json").output)
    assert [(h["kind"], h["previous_version"], h["version"]) for h in history] == [
        ("set", None, "1"),
        ("set", "1", "2"),
        ("rollback", "2", "1"),
    ]
    again = CliRunner().invoke(cli, ["rollback", "fraud", "--alias", "production"])
    assert again.exit_code == 1
    assert "no earlier holder of @production" in again.output
    run_cli("audit", "verify")


def test_rollback_refuses_a_version_that_no_longer_loads(workspace, log_model):
    import shutil

    workspace.write_config("")
    first = mlflow.register_model(log_model().uri, "fraud")
    mlflow.register_model(log_model().uri, "fraud")
    run_cli("promote", "models:/fraud/1", "--to", "production")
    run_cli("promote", "models:/fraud/2", "--to", "production")
    source = workspace.plain_client().get_model_version("fraud", first.version).source
    logged = workspace.plain_client().get_logged_model(source.removeprefix("models:/"))
    shutil.rmtree(logged.artifact_location.removeprefix("file://"))
    result = CliRunner().invoke(cli, ["rollback", "fraud", "--alias", "production"])
    assert result.exit_code == 1
    assert "no longer loads" in result.output
    holder = workspace.plain_client().get_model_version_by_alias("fraud", "production")
    assert str(holder.version) == "2"


def test_approvals_flow(workspace, log_model, monkeypatch):
    workspace.write_config("""
policies:
  - use: approvals
    when: {alias: production}
    with: {count: 2}
""")
    mlflow.register_model(log_model(user="alice").uri, "fraud")
    monkeypatch.setenv("MLFLOW_STEWARD_ACTOR", "alice")
    denied = CliRunner().invoke(cli, ["approve", "models:/fraud/1", "--alias", "production"])
    assert denied.exit_code == 1
    assert "alice trained or registered this version" in denied.output
    result = CliRunner().invoke(cli, ["promote", "models:/fraud/1", "--to", "production"])
    assert "0 of 2 required approvals" in result.output
    for person in ("bob", "carol"):
        monkeypatch.setenv("MLFLOW_STEWARD_ACTOR", person)
        run_cli("approve", "models:/fraud/1", "--alias", "production", "--comment", "lgtm")
    monkeypatch.setenv("MLFLOW_STEWARD_ACTOR", "dave")
    run_cli("approvals", "request", "models:/fraud/1", "--alias", "production")
    assert (
        "dave requested this promotion and cannot approve it"
        in CliRunner().invoke(cli, ["approve", "models:/fraud/1", "--alias", "production"]).output
    )
    monkeypatch.setenv("MLFLOW_STEWARD_ACTOR", "erin")
    run_cli("reject", "models:/fraud/1", "--alias", "production", "--comment", "not yet")
    monkeypatch.setenv("MLFLOW_STEWARD_ACTOR", "alice")
    blocked = CliRunner().invoke(cli, ["promote", "models:/fraud/1", "--to", "production"])
    assert "rejected for @production by erin: not yet" in blocked.output
    with workspace_db(workspace) as conn:  # let the rejection expire (the default is 7 days)
        conn.execute(
            "UPDATE steward_approvals SET created = created - 8 * 86400 WHERE verdict = 'reject'"
        )
    listed = json.loads(run_cli("approvals", "list", "--json").output)
    assert [(r["actor"], r["verdict"]) for r in listed] == [
        ("bob", "approve"),
        ("carol", "approve"),
        ("dave", "request"),
    ]
    run_cli("promote", "models:/fraud/1", "--to", "production")
    entries = _audit_json(workspace)
    actors = {(e["actor"], e["action"], e["decision"]) for e in entries}
    assert ("alice", "approve", "refused") in actors
    assert ("bob", "approve", "allowed") in actors
    assert ("carol", "approve", "allowed") in actors
    assert ("alice", "set_alias", "allowed") in actors


def test_legacy_stage_transition_is_governed(workspace, log_model):
    workspace.write_config("""
policies:
  - use: metric-threshold
    when: {action: transition_stage, stage: Production}
    with: {metric: accuracy, min: 0.8}
""")
    mlflow.register_model(log_model(accuracy=0.6).uri, "fraud")
    client = workspace.client()
    with pytest.raises(MlflowException) as err:
        client.transition_model_version_stage("fraud", "1", "Production")
    assert "[metric-threshold]" in refused(err)
    client.transition_model_version_stage("fraud", "1", "Staging")
    assert workspace.plain_client().get_model_version("fraud", "1").current_stage == "Staging"


def test_python_check_api_preflight_before_registering(workspace, log_model):
    import mlflow_steward as steward

    unsigned = log_model(signature=False)
    decision = steward.check(unsigned.uri, name="fraud")
    assert not decision.allowed
    assert decision.event.action == "create_model_version"
    assert [o.policy for o in decision.denials] == ["require-signature"]
    assert workspace.plain_client().search_registered_models() == []
    assert _audit_json(workspace) == []


class _NoFridays:
    """An in-process policy, as a team keeps one in its training repository."""

    @staticmethod
    def _check(event, options):
        from mlflow_steward.plugins import PolicyVerdict

        return PolicyVerdict.deny("no releases today")

    from mlflow_steward import hookimpl as _hookimpl

    @_hookimpl
    def steward_policies(self):
        from mlflow_steward.plugins import Policy

        yield Policy(
            name="no-releases-today",
            check=self._check,
            description="Nothing is released today.",
            actions=("create_model_version",),
            enabled_by_default=True,
        )


def test_the_dry_run_consults_the_plugins_the_real_call_consults(workspace, log_model):
    import mlflow_steward as steward

    workspace.write_config("")
    steward.register_plugin(_NoFridays())
    logged = log_model()
    decision = steward.check(logged.uri, name="fraud")
    assert [o.policy for o in decision.denials] == ["no-releases-today"]
    with pytest.raises(MlflowException, match=r"\[no-releases-today\] no releases today"):
        mlflow.register_model(logged.uri, "fraud")


def test_python_and_cli_dry_runs_check_the_same_action(workspace, log_model):
    import mlflow_steward as steward

    workspace.write_config("")
    logged = log_model()
    version = (
        workspace.plain_client().create_model_version("fraud", logged.uri, run_id=logged.run_id)
        if workspace.plain_client().create_registered_model("fraud")
        else None
    )
    uri = f"models:/fraud/{version.version}"
    cases = [
        ({"stage": "Production"}, ["--stage", "Production"], "transition_stage"),
        ({"alias": "production"}, ["--to", "production"], "set_alias"),
        ({}, [], "set_alias"),
    ]
    for kwargs, flags, action in cases:
        assert steward.check(uri, **kwargs).event.action == action, kwargs
        shown = CliRunner().invoke(cli, ["check", uri, *flags, "--json"])
        assert json.loads(shown.output)["action"] == action, shown.output
    unregistered = [
        ({"stage": "Production"}, ["--stage", "Production"], "transition_stage"),
        ({"alias": "production"}, ["--to", "production"], "set_alias"),
        ({}, [], "create_model_version"),
    ]
    for kwargs, flags, action in unregistered:
        assert steward.check(logged.uri, name="churn", **kwargs).event.action == action, kwargs
        shown = CliRunner().invoke(cli, ["check", logged.uri, "--name", "churn", *flags, "--json"])
        assert json.loads(shown.output)["action"] == action, shown.output


def test_prompt_registry_still_works(workspace):
    prompt = mlflow.genai.register_prompt(name="greeting", template="Hello {{name}}")
    assert prompt.version == 1


def test_steward_http_uri_is_refused_with_pointer_to_server(workspace):
    from mlflow import MlflowClient

    with pytest.raises(RegistryURIError, match="--app-name steward"):
        MlflowClient(registry_uri="steward+http://127.0.0.1:5000").get_registered_model("x")


def test_unknown_model_uri_is_a_clear_error(workspace):
    result = CliRunner().invoke(cli, ["promote", "models:/nope/7", "--to", "production"])
    assert result.exit_code == 1
    assert "models:/nope/7 does not exist" in result.output
    result = CliRunner().invoke(cli, ["check", "fraud:latest", "--to", "production"])
    assert "cannot read model URI 'fraud:latest'" in result.output


def test_bad_config_is_one_line_with_file_and_line(workspace, tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("policies:\n  - use: required-tags\n    with: {tag: [owner]}\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mlflow_steward.cli.main import main; main()",
            "--config",
            str(bad),
            "config",
            "check",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert (
        f"{bad}:3: policies[0].with.tag: policy 'required-tags' has no option 'tag'" in proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_register_plugin_enforces_an_in_process_policy(workspace, log_model):
    import mlflow_steward as steward
    from mlflow_steward import hookimpl
    from mlflow_steward.plugins.types import Policy, PolicyVerdict

    class NoFraudNames:
        @hookimpl
        def steward_policies(self):
            yield Policy(
                name="no-fraud-names",
                description="test",
                enabled_by_default=True,
                actions=frozenset({"create_model_version"}),
                check=lambda event, options: (
                    PolicyVerdict.deny("names may not contain fraud")
                    if "fraud" in event.model
                    else PolicyVerdict.allow("ok")
                ),
            )

    uri = log_model().uri
    mlflow.register_model(uri, "fraud")  # the store is built and cached by MLflow here
    steward.register_plugin(NoFraudNames())
    with pytest.raises(MlflowException) as err:
        mlflow.register_model(uri, "fraud")
    assert "[no-fraud-names] names may not contain fraud" in refused(err)
    assert str(mlflow.register_model(uri, "churn").version) == "1"
    assert [
        str(v.version) for v in workspace.plain_client().search_model_versions("name='fraud'")
    ] == ["1"]


def test_alias_holders_cannot_be_deleted_or_renamed(workspace, log_model):
    client = workspace.client()
    mlflow.register_model(log_model().uri, "fraud")
    mlflow.register_model(log_model().uri, "fraud")
    client.set_model_version_tag("fraud", "1", "owner", "alice")
    client.set_registered_model_alias("fraud", "production", "1")
    for attempt, fragment in (
        (
            lambda: client.delete_model_version("fraud", "1"),
            "version 1 of fraud holds @production (version 1) and cannot be deleted",
        ),
        (
            lambda: client.delete_registered_model("fraud"),
            "registered model fraud holds @production (version 1) and cannot be deleted",
        ),
        (
            lambda: client.rename_registered_model("fraud", "fraud2"),
            "registered model fraud holds @production (version 1) and cannot be renamed",
        ),
    ):
        with pytest.raises(MlflowException) as err:
            attempt()
        assert f"[protect-aliases] {fragment}" in refused(err)
    client.delete_model_version("fraud", "2")  # holds no alias
    plain = workspace.plain_client()
    assert [str(v.version) for v in plain.search_model_versions("name='fraud'")] == ["1"]
    assert {k: str(v) for k, v in plain.get_registered_model("fraud").aliases.items()} == {
        "production": "1"
    }
    client.delete_registered_model_alias("fraud", "production")
    client.rename_registered_model("fraud", "fraud-v2")
    assert plain.get_registered_model("fraud-v2").name == "fraud-v2"


@pytest.mark.parametrize("key", ["Steward.status", " steward.status", "STEWARD.x"])
def test_reserved_tag_prefix_ignores_case_and_blanks(workspace, log_model, key):
    mlflow.register_model(log_model().uri, "fraud")
    with pytest.raises(MlflowException) as err:
        workspace.client().set_model_version_tag("fraud", "1", key, "x")
    assert "[reserved-tags]" in refused(err)


def test_steward_failure_refuses_with_403_and_writes_nothing(workspace, log_model, monkeypatch):
    mlflow.register_model(log_model().uri, "fraud")
    client = workspace.client()
    governor = client._get_registry_client().store.governor
    calls = []

    def broken_append(**kwargs):
        calls.append(kwargs["action"])
        raise RuntimeError("audit database unreachable")

    monkeypatch.setattr(governor.audit, "append", broken_append)
    # Refused (no owner tag) and the refusal cannot be recorded: still refused, 403, not 5xx.
    with pytest.raises(MlflowException) as err:
        client.set_registered_model_alias("fraud", "production", "1")
    message = refused(err)
    assert "steward could not decide (RuntimeError: audit database unreachable)" in message
    assert "fails closed" in message
    assert workspace.plain_client().get_registered_model("fraud").aliases == {}

    # Allowed, and its entry cannot be appended: MLflow's write was in the same transaction, so
    # it is rolled back with it. A 409 (never retried) says nothing was changed.
    with pytest.raises(MlflowException) as err:
        client.set_model_version_tag("fraud", "1", "owner", "alice")
    assert err.value.error_code == "ABORTED"
    assert err.value.get_http_status_code() == 409
    assert "was not applied: steward could not add it to the audit log" in err.value.message
    assert "nothing was changed" in err.value.message
    assert "owner" not in workspace.plain_client().get_model_version("fraud", "1").tags
    # The entry, then the entry saying it failed: both could not be written.
    assert calls == ["set_alias", "set_model_version_tag", "set_model_version_tag"]


def test_an_unreachable_database_refuses_with_403_and_writes_nothing(
    workspace, log_model, monkeypatch
):
    mlflow.register_model(log_model().uri, "fraud")
    client = workspace.client()
    client.set_model_version_tag("fraud", "1", "owner", "alice")
    governor = client._get_registry_client().store.governor

    def unreachable():
        raise ConnectionRefusedError("connection to the registry database refused")

    monkeypatch.setattr(governor.db_engine, "connect", unreachable)
    with pytest.raises(MlflowException) as err:
        client.set_registered_model_alias("fraud", "production", "1")
    assert err.value.error_code == "PERMISSION_DENIED"
    assert "steward could not decide (ConnectionRefusedError: connection to the" in refused(err)
    monkeypatch.undo()
    assert workspace.plain_client().get_registered_model("fraud").aliases == {}


def test_metric_threshold_reads_the_latest_evaluation_of_a_registered_version(workspace, log_model):
    # The source run logged accuracy 0.95; a later evaluation run logged 0.5 on the logged model
    # (as mlflow.models.evaluate does). The evaluation is what metric-threshold judges.
    logged = log_model(accuracy=0.95)
    with mlflow.start_run():  # MLFLOW_TRACKING_URI points at the workspace
        mlflow.log_metric("accuracy", 0.5, model_id=logged.model_id)
    version = mlflow.register_model(logged.uri, "fraud").version
    client = workspace.client()
    client.set_model_version_tag("fraud", str(version), "owner", "alice")
    with pytest.raises(MlflowException) as err:
        client.set_registered_model_alias("fraud", "production", str(version))
    assert "[metric-threshold] accuracy=0.5 is below the minimum 0.8" in refused(err)


def test_a_move_decided_on_an_older_holder_is_not_applied(workspace, log_model):
    from mlflow_steward.errors import LifecycleError
    from mlflow_steward.governance.governor import action_context
    from mlflow_steward.lifecycle.session import StewardSession

    client = workspace.client()
    for _ in range(3):
        version = mlflow.register_model(log_model().uri, "fraud").version
        client.set_model_version_tag("fraud", version, "owner", "alice")
    client.set_registered_model_alias("fraud", "production", "1")
    with action_context(expect_holder="2"), pytest.raises(MlflowException) as err:
        client.set_registered_model_alias("fraud", "production", "3")
    assert "held by 1 now, not by version 2" in err.value.message
    with action_context(expect_holder="2"), pytest.raises(MlflowException):
        client.delete_registered_model_alias("fraud", "production")
    assert workspace.plain_client().get_model_version_by_alias("fraud", "production").version == 1
    with pytest.raises(LifecycleError, match="held by 1, not version 2"):
        StewardSession().rollback("fraud", "production", to_version="3", expect_current="2")
    last = _audit_json(workspace)[-1]
    assert (last["action"], last["outcome"].split(":")[0]) == ("delete_alias", "failed")


def test_a_decision_does_not_wait_for_a_writer(workspace, log_model):
    """Deciding only reads: `steward check` (and the decision before a write) goes on while
    another connection holds SQLite's write lock, instead of queuing behind it."""
    import sqlite3
    import threading

    import mlflow_steward

    source = log_model()
    client = workspace.client()
    client.create_registered_model("fraud")
    mv = client.create_model_version("fraud", source.uri, run_id=source.run_id)
    client.set_model_version_tag("fraud", mv.version, "owner", "alice")
    writer = sqlite3.connect(workspace.root / "mlflow.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process writing, for as long as this test says
    decided = []
    try:
        thread = threading.Thread(
            target=lambda: decided.append(
                mlflow_steward.check(f"models:/fraud/{mv.version}", alias="production")
            ),
            daemon=True,
        )
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the decision waited for the writer's lock"
    finally:
        writer.rollback()
        writer.close()
    assert decided[0].allowed, decided[0].message()


def _fraud_v1_with_a_1s_timeout(workspace, log_model):
    """A governed client on a workspace whose policies time out after 1 s, holding model
    ``fraud`` with version 1."""
    workspace.write_config("policy_timeout: 1s\n")
    source = log_model()
    client = workspace.client()
    client.create_registered_model("fraud")
    client.create_model_version("fraud", source.uri, run_id=source.run_id)
    return client


def _slow_reader(check):
    """A plugin with one policy, ``slow-reader``, on alias moves: ``check`` reads while the
    database is locked."""
    from mlflow_steward import hookimpl
    from mlflow_steward.plugins.types import Policy

    class SlowReader:
        @hookimpl
        def steward_policies(self):
            yield Policy(
                name="slow-reader",
                description="reads while the database is locked",
                enabled_by_default=True,
                actions=frozenset({"set_alias"}),
                check=check,
            )

    return SlowReader()


def test_a_policy_reading_past_its_timeout_keeps_its_connection(workspace, log_model):
    """A policy times out while its read waits for SQLite's lock: the decision is refused
    naming it at once, and the connection the policy reads on is not invalidated from under it
    by the deciding thread: the reader gives it back when its read ends, and the next decision
    works."""
    import sqlite3
    import threading

    from sqlalchemy import event as sa_event
    from sqlalchemy.pool import Pool

    import mlflow_steward as steward
    from mlflow_steward.plugins.types import PolicyVerdict

    _fraud_v1_with_a_1s_timeout(workspace, log_model)
    read_done = threading.Event()
    outcome: list[str] = []

    def blocked_read(event, options):
        writer = sqlite3.connect(workspace.root / "mlflow.db", isolation_level=None)
        writer.execute("BEGIN EXCLUSIVE")  # readers of the file now wait, then give up
        try:
            outcome.append(str(event.facts.run_metrics))  # on the shared connection
        except Exception as exc:
            outcome.append(type(exc).__name__)
        finally:
            writer.rollback()
            writer.close()
            read_done.set()
        return PolicyVerdict.allow("late")

    invalidated: list[tuple] = []

    def on_invalidate(*args) -> None:
        invalidated.append(args)

    sa_event.listen(Pool, "invalidate", on_invalidate)
    try:
        decision = steward.check(
            "models:/fraud/1", alias="production", plugins=[_slow_reader(blocked_read)]
        )
        assert read_done.wait(timeout=60), "the abandoned read never ended"
    finally:
        sa_event.remove(Pool, "invalidate", on_invalidate)
    assert [o.policy for o in decision.denials] == ["slow-reader"]
    assert "no verdict after 1s" in decision.denials[0].reason
    assert invalidated == []
    assert outcome == ["OperationalError"]  # the read waited for the lock, then gave up
    assert steward.check("models:/fraud/1", alias="production").allowed


def test_registering_through_the_governed_store_logs_no_wait(workspace, log_model, caplog):
    # MLflow's SQL store creates READY versions and skips the client's "Waiting up to 300
    # seconds" wait; the governed store must answer the same, not AbstractStore's default.
    model = log_model()
    with caplog.at_level("INFO", logger="mlflow"):
        version = mlflow.register_model(model.uri, "fraud")
        workspace.client().create_model_version("fraud", model.uri, model_id=model.model_id)
    assert version.status == "READY"
    waits = [r.getMessage() for r in caplog.records if "finish creation" in r.getMessage()]
    assert waits == []


def test_a_built_in_policy_waiting_on_a_download_is_refused_at_its_timeout(workspace, monkeypatch):
    """Built-in policies run on the calling thread; a download they wait on does not: it is
    abandoned at the policy's timeout, the move is refused naming the policy, nothing moves."""
    import threading
    import time

    from mlflow_steward import _mlflow_adapter

    workspace.write_config("policies: [{use: require-signature, timeout: 0.5s}]\n")
    release = threading.Event()

    class HangingRepository:
        def download_artifacts(self, path, dst_path=None):
            release.wait(30)
            raise OSError("gave up")

    monkeypatch.setattr(_mlflow_adapter, "artifact_repository", lambda uri, t: HangingRepository())
    plain = workspace.plain_client()
    plain.create_registered_model("fraud")
    plain.create_model_version("fraud", "s3://models-bucket/fraud/1")
    started = time.monotonic()
    try:
        with pytest.raises(MlflowException) as err:
            workspace.client().set_registered_model_alias("fraud", "production", "1")
        took = time.monotonic() - started
    finally:
        release.set()
    assert took < 5
    message = refused(err)
    assert "[require-signature] policy could not decide" in message
    assert "no verdict after 0.5s (downloading MLmodel from s3://models-bucket/fraud/1" in message
    assert plain.get_registered_model("fraud").aliases == {}
    assert _audit_json(workspace)[-1]["decision"] == "refused"


def test_a_governed_write_reads_its_facts_on_its_own_connection(workspace, log_model):
    """The decision's reads of the registry's database are made on the connection the write
    then uses: MLflow's own pool is not touched by a governed alias move."""
    from mlflow.entities.model_registry import ModelVersionTag
    from sqlalchemy import event as sa_event

    from mlflow_steward.governance.store import build_governed_store

    source = log_model()
    store = build_governed_store(workspace.registry_uri, workspace.db_uri)
    store.create_registered_model("fraud")
    store.create_model_version(
        "fraud", source.uri, run_id=source.run_id, tags=[ModelVersionTag("owner", "a")]
    )
    checkouts: list[int] = []
    sa_event.listen(store.inner.engine, "checkout", lambda *args: checkouts.append(1))
    store.set_registered_model_alias("fraud", "production", "1")
    assert checkouts == []
    # the newest entry but the evidence of the move (builtin.evidence, written after it)
    newest = store.governor.audit.entries(model="fraud", limit=2, newest_first=True)
    assert newest[0].action == "record_evidence"
    entry = newest[1]
    assert (entry.action, entry.outcome) == ("set_alias", "applied")
    # metric-threshold read the run's accuracy, required-tags the version's tags
    assert {r["policy"] for r in entry.reasons} >= {"metric-threshold", "required-tags"}
    assert store.governor.db_engine.pool.checkedout() == 0


def test_a_plugin_reading_past_its_timeout_keeps_the_writes_connection(workspace, log_model):
    """A plugin policy still reads on the connection lent to the decision when its timeout
    refuses the move: steward neither writes on that connection nor closes it from under the
    reader; the refusal is on the log, the alias does not move, and the next move works."""
    import sqlite3
    import threading

    import mlflow_steward as steward
    from mlflow_steward.plugins.types import PolicyVerdict

    client = _fraud_v1_with_a_1s_timeout(workspace, log_model)
    read_done = threading.Event()
    outcome: list[str] = []
    slow = {"on": True}

    def blocked_read(event, options):
        if not slow["on"]:
            return PolicyVerdict.allow("fast now")
        writer = sqlite3.connect(
            workspace.root / "mlflow.db", isolation_level=None, check_same_thread=False
        )
        writer.execute("BEGIN EXCLUSIVE")  # readers of the file now wait, for 3 s

        def release() -> None:
            writer.rollback()
            writer.close()

        threading.Timer(3, release).start()
        try:
            outcome.append(dict(event.facts.run_metrics))  # on the lent connection
        except Exception as exc:
            outcome.append(type(exc).__name__)
        finally:
            read_done.set()
        return PolicyVerdict.allow("late")

    steward.register_plugin(_slow_reader(blocked_read))
    with pytest.raises(MlflowException) as err:
        client.set_registered_model_alias("fraud", "production", "1")
    assert "[slow-reader]" in refused(err)
    assert "no verdict after 1s" in refused(err)
    assert read_done.wait(timeout=60), "the abandoned read never ended"
    assert outcome == [{"accuracy": 0.95}]  # it read on after the refusal, and finished
    assert workspace.plain_client().get_registered_model("fraud").aliases == {}
    slow["on"] = False
    client.set_registered_model_alias("fraud", "production", "1")
    aliases = workspace.plain_client().get_registered_model("fraud").aliases
    assert {k: str(v) for k, v in aliases.items()} == {"production": "1"}
    moves = [(e.action, e.decision) for e in steward_entries(workspace) if e.action == "set_alias"]
    assert moves == [("set_alias", "refused"), ("set_alias", "allowed")]


def steward_entries(workspace):
    from mlflow_steward.records import db
    from mlflow_steward.records.audit import AuditLog

    return AuditLog(db.get_engine(workspace.db_uri)).entries(model="fraud")
