"""Unit checks of the governed server's guards: identity headers, request bodies, the rejected-
attempt limiter, audit field bounds and the escaping of `steward audit log`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mlflow_steward.cli.audit_cmd import printable
from mlflow_steward.cli.main import cli
from mlflow_steward.records.audit import AuditLog, bounded_fields, truncate
from mlflow_steward.server import guard, identity
from mlflow_steward.server.attempts import AttemptLimiter, write_action

H = "X-Forwarded-User"


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ([(H, "alice")], None),
        ([("x-forwarded-user", "alice"), ("Host", "x")], None),
        ([], None),
        ([(H, "alice"), (H, "bob")], "2 times"),
        ([("X_Forwarded_User", "bob")], "'X_Forwarded_User'"),
        ([(H, "alice"), ("x_forwarded_user", "bob")], "2 times"),
        ([(H, "alice, bob")], "several values"),
    ],
)
def test_trusted_header_problems(headers, problem):
    found = identity.trusted_header_problem(headers, H)
    assert (found is None) if problem is None else (problem in found)


def test_basic_mode_reads_the_auth_apps_user_not_the_header(monkeypatch):
    from mlflow_steward import _mlflow_adapter

    resolve = identity.actor_resolver("basic")
    monkeypatch.setattr(_mlflow_adapter, "server_authenticated_user", lambda: "alice")
    assert resolve(object()) == "alice"
    monkeypatch.setattr(_mlflow_adapter, "server_authenticated_user", lambda: None)
    assert resolve(object()) == identity.ANONYMOUS


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[]", "not an array"),
        (b'"x"', "not a string"),
        (b"1", "not a number"),
        (b"null", "not null"),
        (b"[" * 100_000, "deeper"),
        (b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", "deeper"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_bodies_are_refused(raw, message):
    with pytest.raises(guard.Refusal, match=message):
        guard.parse_body(raw)


def test_good_bodies_pass_double_encoded_too():
    assert guard.parse_body(b"") is None
    assert guard.parse_body(b'{"name": "m"}') == {"name": "m"}
    assert guard.parse_body(json.dumps(json.dumps({"name": "m"})).encode()) == {"name": "m"}


@pytest.mark.parametrize(
    ("path", "fields", "message"),
    [
        ("/api/2.0/mlflow/registered-models/create", {"name": "a@b"}, "'@'"),
        ("/api/2.0/mlflow/registered-models/rename", {"new_name": "a/b"}, "'@' or '/'"),
        ("/api/2.0/mlflow/registered-models/delete", {"name": "a\x00b"}, "control"),
        ("/api/2.0/mlflow/registered-models/alias", {"alias": "a\nb"}, "control"),
        ("/api/2.0/mlflow/registered-models/delete", {"name": "n" * 300}, "limit is 256"),
        ("/api/2.0/mlflow/model-versions/get", {"version": "9" * 25}, "out of range"),
    ],
)
def test_bad_fields_are_refused(path, fields, message):
    with pytest.raises(guard.Refusal, match=message):
        guard.check_fields(path, fields)


def test_existing_names_with_at_can_still_be_addressed():
    """'@' is refused only in a *new* name (create, rename): a model created before the rule
    (or by another client) stays addressable by every other route."""
    for path in (
        "/api/2.0/mlflow/registered-models/delete",
        "/api/2.0/mlflow/registered-models/alias",
        "/api/2.0/mlflow/model-versions/set-tag",
        "/api/2.0/mlflow/model-versions/delete",
    ):
        assert guard.check_fields(path, {"name": "a@b", "version": "3"}) is None
    with pytest.raises(guard.Refusal, match="'@' or '/'"):
        guard.check_fields("/api/2.0/mlflow/registered-models/create", {"name": "a@b"})
    with pytest.raises(guard.Refusal, match="'@' or '/'"):
        guard.check_fields("/api/2.0/mlflow/registered-models/rename", {"new_name": "c@d"})


def test_governed_routes():
    assert guard.governed_route("/api/2.0/mlflow/registered-models/create")
    assert guard.governed_route("/ajax-api/2.0/mlflow/model-versions/get")
    assert guard.governed_route("/api/2.0/mlflow/webhooks/abc/test")
    assert guard.governed_route("/ajax-api/2.0/steward/approvals")
    assert not guard.governed_route("/api/2.0/mlflow/runs/create")
    assert not guard.governed_route("/health")


def test_webhook_write_actions():
    assert write_action("/api/2.0/mlflow/webhooks", "POST") == "create_webhook"
    assert write_action("/api/2.0/mlflow/webhooks", "GET") is None
    assert write_action("/api/2.0/mlflow/webhooks/w1", "PATCH") == "update_webhook"
    assert write_action("/api/2.0/mlflow/webhooks/w1", "DELETE") == "delete_webhook"
    assert write_action("/api/2.0/mlflow/webhooks/w1", "GET") is None
    assert write_action("/api/2.0/mlflow/webhooks/w1/test", "POST") == "test_webhook"


def test_the_limiter_counts_past_the_allowance_and_sums_up_once():
    limiter = AttemptLimiter(per_client=3, window=60, max_clients=10)
    admitted = [limiter.admit("1.2.3.4", "/r", now=float(i))[0] for i in range(10)]
    assert admitted == [True] * 3 + [False] * 7
    assert limiter.admit("5.6.7.8", "/r", now=10)[0]  # another client has its own allowance
    assert limiter.due(now=30) == []
    (summary,) = [s for s in limiter.due(now=61) if s.client == "1.2.3.4"]
    assert (summary.count, summary.routes) == (7, {"/r": 7})
    assert limiter.due(now=200) == []  # each count is returned once
    assert limiter.admit("1.2.3.4", "/r", now=201)[0]  # a new window


def test_the_limiter_tracks_a_bounded_number_of_clients():
    limiter = AttemptLimiter(per_client=1, window=60, max_clients=100)
    for i in range(1000):
        limiter.admit(f"10.0.{i // 256}.{i % 256}", "/r", now=0)
        limiter.admit(f"10.0.{i // 256}.{i % 256}", "/r", now=0)  # one counted each
        limiter.due(now=0)
    assert len(limiter._windows) <= 101


def test_truncate_marks_what_was_cut():
    assert truncate("abc", 5) == "abc"
    cut = truncate("x" * 1000, 100)
    assert len(cut) == 100
    assert cut.endswith("…[+913 chars]")


def test_every_field_is_bounded_and_the_chain_verifies(tmp_path):
    from mlflow_steward.records import db

    log = AuditLog(db.get_engine(f"sqlite:///{tmp_path / 'a.db'}"))
    huge = "h" * 100_000
    entry = log.append(
        actor=huge,
        action="create_registered_model",
        model=huge,
        version=huge,
        alias=huge,
        details={"tag_value": huge, "nested": {"deep": [huge] * 500}, huge: 1},
        decision="refused",
        outcome=huge,
        reasons=[{"policy": "p", "allowed": False, "reason": huge}],
    )
    assert len(entry.actor) == len(entry.model) == len(entry.alias) == 256
    assert len(entry.version) == 32
    assert len(entry.outcome) == 2000
    assert len(json.dumps(entry.details)) < 250_000
    assert entry.reasons[0]["reason"].endswith("…[+98015 chars]")
    assert log.verify().ok
    stored = log.entries()[0]
    assert stored.details == entry.details


def test_bounded_fields_leave_short_values_alone():
    fields = {
        "actor": "a",
        "model": "m",
        "version": "1",
        "alias": None,
        "details": {"k": "v", "n": 3},
        "outcome": "applied",
        "reasons": [{"policy": "p", "allowed": True, "reason": "ok"}],
    }
    assert bounded_fields(fields) == fields


def test_printable_escapes_control_characters():
    assert printable("a\nb") == "a\\nb"
    assert printable("\x1b[2J\r\x00") == "\\x1b[2J\\r\\x00"
    assert printable("back\\slash") == "back\\\\slash"
    assert printable("naïve café") == "naïve café"


def test_audit_log_prints_one_line_per_entry(tmp_path, monkeypatch):
    from mlflow_steward.records import db

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    AuditLog(db.get_engine(uri)).append(
        actor="eve\n#2 2020-01-01 admin set_alias fraud/1@production ALLOWED (applied)",
        action="create_registered_model",
        model="m\x1b[31m",
        version=None,
        alias="a\rb",
        details={},
        decision="refused",
        outcome="rejected\x00",
        reasons=[{"policy": "p\n", "allowed": False, "reason": "r\nFAIL fake: x"}],
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    result = CliRunner().invoke(cli, ["audit", "log"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2, lines
    assert "\x1b" not in result.output
    assert "\r" not in result.output
    assert "\\x1b[31m" in lines[0]
    as_json = CliRunner().invoke(cli, ["audit", "log", "--json"])
    assert json.loads(as_json.output)[0]["actor"].startswith("eve\n#2")
