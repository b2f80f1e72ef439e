"""Steward's records, unit by unit on a SQLite database: the audit log (hashing, bounds,
queries, every verify finding), alias history, review entries and pending writes. In-process and
fast: these are the tests the mutation run (tests/mutation/) relies on for these modules."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import socket
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlflow_steward.env import AUDIT_KEY_ENV
from mlflow_steward.plugins.events import Decision, PolicyOutcome
from mlflow_steward.plugins.testing import make_event
from mlflow_steward.records import approvals, db, history, pending_writes, schema
from mlflow_steward.records.audit import (
    FIELD_LIMITS,
    ITEMS_LIMIT,
    VALUE_LIMIT,
    AuditLog,
    bounded_fields,
    canonical,
    utc_now,
)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    yield db.get_engine(f"sqlite:///{tmp_path / 'r.db'}")
    db.dispose_engines()


@pytest.fixture
def dbfile(tmp_path: Path, engine: sa.Engine) -> Path:
    return tmp_path / "r.db"


def _fields(**over):
    return {
        "actor": "alice",
        "action": "set_alias",
        "model": "fraud",
        "version": "3",
        "alias": "production",
        "details": {"k": "v"},
        "decision": "allowed",
        "outcome": "applied",
        "reasons": [{"policy": "p", "allowed": True}],
        **over,
    }


TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


# -- audit: hashing and the stored entry --------------------------------------------------------


def _expected_content(entry) -> dict:
    return {
        "seq": entry.seq,
        "ts": entry.ts,
        "actor": entry.actor,
        "action": entry.action,
        "model": entry.model,
        "version": entry.version,
        "alias": entry.alias,
        "details": entry.details,
        "decision": entry.decision,
        "outcome": entry.outcome,
        "reasons": entry.reasons,
        "prev_hash": entry.prev_hash,
    }


def _sha(content: dict) -> str:
    payload = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def test_utc_now_is_iso_with_microseconds_and_z():
    now = utc_now()
    assert TS.match(now), now
    parsed = datetime.strptime(now, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 60


def test_utc_now_is_utc_whatever_the_local_timezone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Kathmandu")  # UTC+05:45: no whole-hour coincidence
    time.tzset()
    try:
        parsed = datetime.strptime(utc_now(), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert abs((datetime.now(UTC) - parsed).total_seconds()) < 60
    finally:
        monkeypatch.undo()
        time.tzset()


def test_databases_without_update_returning_bump_the_head_and_read_it(engine, monkeypatch):
    """MySQL and old SQLite cannot UPDATE ... RETURNING: the head is bumped, then read."""
    monkeypatch.setattr(engine.dialect, "update_returning", False)
    log = AuditLog(engine)
    entries = [log.append(**_fields()) for _ in range(3)]
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[2].prev_hash == entries[1].hash
    assert log.verify().ok


def test_canonical_is_sorted_compact_utf8_json():
    assert canonical({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


def test_entries_chain_from_genesis_with_sha256_of_their_content(engine):
    log = AuditLog(engine)
    first = log.append(**_fields())
    second = log.append(**_fields(actor="bob", version=None, alias=None))
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == schema.GENESIS_HASH
    assert second.prev_hash == first.hash
    assert TS.match(first.ts)
    for entry in (first, second):
        assert entry.content() == _expected_content(entry)
        assert entry.hash == _sha(_expected_content(entry))
    stored = log.entries()
    assert stored == [first, second]
    assert stored[1].version is None
    assert stored[1].alias is None
    assert stored[0].details == {"k": "v"}
    assert stored[0].reasons == [{"policy": "p", "allowed": True}]
    assert stored[0].workspace == "default"
    d = stored[0].to_dict()
    assert d["hash"] == first.hash
    assert d["workspace"] == "default"
    assert d["seq"] == 1
    with sqlite3.connect(Path(str(engine.url.database))) as conn:
        assert conn.execute("SELECT seq, hash FROM steward_audit_head").fetchone() == (
            2,
            second.hash,
        )


def test_a_keyed_log_uses_hmac_and_the_key_comes_from_the_environment(engine, monkeypatch):
    log = AuditLog(engine, key=b"secret")
    entry = log.append(**_fields())
    payload = canonical(_expected_content(entry))
    assert entry.hash == hmac.new(b"secret", payload, hashlib.sha256).hexdigest()
    assert not AuditLog(engine).verify().ok  # without the key the chain does not verify
    monkeypatch.setenv(AUDIT_KEY_ENV, "secret")
    assert AuditLog(engine).verify().ok
    explicit = AuditLog(engine, key=b"other")
    assert not explicit.verify().ok  # an explicit key wins over the environment


def test_a_non_default_workspace_is_hashed_and_stored(engine):
    log = AuditLog(engine)
    entry = log.append(**_fields(), workspace="team-a")
    assert entry.workspace == "team-a"
    assert entry.hash == _sha({**_expected_content(entry), "workspace": "team-a"})
    assert entry.content()["workspace"] == "team-a"
    assert log.entries()[0].workspace == "team-a"
    assert log.verify().ok
    # moved into the default workspace: what is hashed changes, so it no longer verifies
    with engine.begin() as conn:
        conn.execute(schema.audit.update().values(workspace="default"))
    result = log.verify()
    assert (result.ok, result.bad_seq) == (False, 1)


def test_append_decision_records_the_event_and_every_policys_verdict(engine):
    event = make_event(
        "set_model_version_tag",
        "fraud",
        actor="carol",
        version="2",
        alias=None,
        tag_key="owner",
        tag_value="x",
        workspace="ws",
    )
    outcomes = (
        PolicyOutcome("a", "use-a", "plug", True, "fine"),
        PolicyOutcome("b", "use-b", "plug", False, "no", error=True),
    )
    log = AuditLog(engine)
    entry = log.append_decision(event, Decision(event, outcomes), "refused")
    assert (entry.actor, entry.action, entry.model, entry.version, entry.alias) == (
        "carol",
        "set_model_version_tag",
        "fraud",
        "2",
        None,
    )
    assert entry.details == {"tag_key": "owner", "tag_value": "x"}
    assert entry.decision == "refused"
    assert entry.outcome == "refused"
    assert entry.reasons == [o.to_dict() for o in outcomes]
    assert entry.workspace == "ws"
    allowed = Decision(event, outcomes[:1])
    again = log.append_decision(event, allowed, "applied", version="7")
    assert (again.decision, again.version) == ("allowed", "7")
    new = make_event("create_model_version", "fraud")
    assert log.append_decision(new, Decision(new, ()), "applied").version is None


def test_also_runs_in_the_entrys_transaction_and_conn_joins_the_callers(engine):
    log = AuditLog(engine)
    seen = []
    entry = log.append(
        **_fields(), also=lambda conn, seq: seen.append((seq, conn.in_transaction()))
    )
    assert seen == [(entry.seq, True)]

    class Boom(Exception):
        pass

    def append_then_fail() -> None:
        with engine.begin() as conn:
            log.append(**_fields(), conn=conn)
            raise Boom  # the caller's transaction rolls back: so does the entry

    with pytest.raises(Boom):
        append_then_fail()
    assert [e.seq for e in log.entries()] == [1]
    with engine.begin() as conn:
        joined = log.append(**_fields(actor="joined"), conn=conn)
    assert log.entries()[-1] == joined
    assert log.verify().ok


# -- audit: bounds ------------------------------------------------------------------------------


def test_bounded_fields_cut_each_field_and_every_value(engine):
    long = "y" * 5000
    nested: dict = {"leaf": "z"}
    for _ in range(12):
        nested = {"n": nested}
    fields = bounded_fields(
        {
            "actor": long,
            "model": long,
            "version": long,
            "alias": None,
            "outcome": long,
            "details": {
                "s": long,
                "n": None,
                "b": True,
                "i": 3,
                "f": 1.5,
                "k" * 300: 1,
                "many": list(range(ITEMS_LIMIT + 7)),
                "tuple": (1, "a"),
                "obj": Path("/p"),
                "deep": nested,
                "wide": {str(i): i for i in range(ITEMS_LIMIT + 3)},
            },
            "reasons": [{"reason": long}],
        }
    )
    for name, limit in FIELD_LIMITS.items():
        if name != "alias":
            assert len(fields[name]) <= limit
            assert fields[name].startswith("y")
            assert fields[name].endswith("chars]")
    assert fields["alias"] is None
    d = fields["details"]
    assert len(d["s"]) <= VALUE_LIMIT
    assert d["s"].endswith("chars]")
    assert (d["n"], d["b"], d["i"], d["f"]) == (None, True, 3, 1.5)
    assert any(len(k) <= 256 and k.startswith("k") and k.endswith("chars]") for k in d)
    assert d["many"][:ITEMS_LIMIT] == list(range(ITEMS_LIMIT))
    assert d["many"][ITEMS_LIMIT:] == ["…[+7 items]"]
    assert len(d["many"]) == ITEMS_LIMIT + 1
    assert d["tuple"] == [1, "a"]
    assert d["obj"] == "/p"
    assert len(d["wide"]) == ITEMS_LIMIT + 1
    assert d["wide"]["…"] == "[+3 keys]"
    assert d["wide"]["99"] == 99
    assert "100" not in d["wide"]
    depth, node = 0, d["deep"]
    while isinstance(node, dict):
        node, depth = node["n"], depth + 1
    assert depth == 7  # the 8th level down is kept as its (bounded) repr
    assert isinstance(node, str)
    assert node.startswith("{'n'")
    assert fields["reasons"][0]["reason"].endswith("chars]")
    deep_list: list = ["leaf"]
    for _ in range(12):
        deep_list = [deep_list]
    bounded_list = bounded_fields(_fields(details={"deep": deep_list}))["details"]["deep"]
    depth, node = 0, bounded_list
    while isinstance(node, list):
        node, depth = node[0], depth + 1
    assert depth == 7  # lists too: the 8th level down is kept as its repr
    assert isinstance(node, str)
    assert node.startswith("[[")
    exact = bounded_fields(_fields(details={"l": list(range(ITEMS_LIMIT))}))
    assert exact["details"]["l"] == list(range(ITEMS_LIMIT))
    assert exact["actor"] == "alice"
    # the stored entry is the bounded one, and it verifies as stored
    log = AuditLog(engine)
    entry = log.append(**_fields(actor=long, details={"s": long}))
    assert len(entry.actor) <= FIELD_LIMITS["actor"]
    assert log.entries()[0].actor == entry.actor
    assert log.verify().ok


# -- audit: queries -----------------------------------------------------------------------------


def test_entries_filter_order_and_limit(engine):
    log = AuditLog(engine)
    log.append(**_fields(model="a"))
    log.append(**_fields(model="b"), workspace="w2")
    log.append(**_fields(model="a"))
    log.append(**_fields(model="a"), workspace="w2")
    assert [e.seq for e in log.entries()] == [1, 2, 3, 4]
    assert [e.seq for e in log.entries(model="a")] == [1, 3, 4]
    assert [e.seq for e in log.entries(workspace="w2")] == [2, 4]
    assert [e.seq for e in log.entries(model="a", workspace="default")] == [1, 3]
    assert [e.seq for e in log.entries(newest_first=True)] == [4, 3, 2, 1]
    assert [e.seq for e in log.entries(limit=2)] == [1, 2]
    assert [e.seq for e in log.entries(model="a", limit=1, newest_first=True)] == [4]
    assert log.last_entry_for_model("a").seq == 4
    assert log.last_entry_for_model("b").seq == 2
    assert log.last_entry_for_model("none") is None


def test_iter_all_reads_every_entry_in_batches_up_to_a_sequence_number(engine):
    log = AuditLog(engine)
    for i in range(7):
        log.append(**_fields(actor=f"a{i}"))
    assert [e.seq for e in log.iter_all(batch=2)] == list(range(1, 8))
    assert [e.seq for e in log.iter_all(batch=3, up_to=5)] == [1, 2, 3, 4, 5]
    assert [e.seq for e in log.iter_all(up_to=0)] == []
    assert [e.actor for e in log.iter_all()] == [f"a{i}" for i in range(7)]


def test_export_jsonl_writes_every_entry_as_sorted_json(engine):
    log = AuditLog(engine)
    entries = [log.append(**_fields()), log.append(**_fields(actor="b"))]
    out = io.StringIO()
    assert log.export_jsonl(out) == 2
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [e.to_dict() for e in entries]
    assert lines[0] == json.dumps(entries[0].to_dict(), sort_keys=True)
    assert AuditLog(engine).export_jsonl(io.StringIO()) == 2


def test_registrant_is_the_actor_of_the_applied_creation(engine):
    log = AuditLog(engine)
    create = {"action": "create_model_version", "version": "3", "outcome": "applied"}
    log.append(
        **_fields(**{**create, "outcome": "refused"}, actor="refused-one", decision="refused")
    )
    log.append(**_fields(**create, actor="first"))
    log.append(**_fields(**create, actor="other-ws"), workspace="w2")
    log.append(**_fields(action="set_alias", version="3", actor="promoter"))
    log.append(**_fields(**{**create, "version": "4"}, actor="four"))
    log.append(**_fields(**create, model="other", actor="other-model"))
    assert log.registrant("fraud", "3") == "first"
    assert log.registrant("fraud", 3) == "first"
    assert log.registrant("fraud", "3", workspace="w2") == "other-ws"
    assert log.registrant("fraud", "4") == "four"
    assert log.registrant("fraud", "5") is None
    log.append(**_fields(**create, actor="again"))
    assert log.registrant("fraud", "3") == "again"  # the newest applied creation


def test_broken_json_is_read_raw_and_flagged(engine, dbfile):
    log = AuditLog(engine)
    log.append(**_fields())
    with sqlite3.connect(dbfile) as conn:
        conn.execute("UPDATE steward_audit SET details = 'not json', reasons = '[oops'")
    entry = log.entries()[0]
    assert (entry.details, entry.reasons) == ("not json", "[oops")
    result = log.verify()
    assert (result.ok, result.bad_seq) == (False, 1)


# -- audit: verify ------------------------------------------------------------------------------


def test_verify_an_intact_log(engine):
    log = AuditLog(engine)
    empty = log.verify()
    assert (empty.ok, empty.entries, empty.bad_seq, empty.problem) == (True, 0, None, "")
    assert empty.head == {"seq": 0, "hash": schema.GENESIS_HASH}
    entries = [log.append(**_fields()) for _ in range(3)]
    result = log.verify()
    assert (result.ok, result.entries, result.bad_seq) == (True, 3, None)
    assert result.head == {"seq": 3, "hash": entries[-1].hash}


def test_verify_names_a_deleted_entry(engine, dbfile):
    log = AuditLog(engine)
    for _ in range(4):
        log.append(**_fields())
    with sqlite3.connect(dbfile) as conn:
        conn.execute("DELETE FROM steward_audit WHERE seq = 2")
    result = log.verify()
    assert (result.ok, result.bad_seq, result.entries) == (False, 2, 2)
    assert result.problem == "entry 2 is missing (next entry found is 3): entries were deleted"


def test_verify_names_an_entry_that_does_not_link(engine, dbfile):
    log = AuditLog(engine)
    for _ in range(3):
        log.append(**_fields())
    with sqlite3.connect(dbfile) as conn:
        conn.execute("UPDATE steward_audit SET prev_hash = ? WHERE seq = 2", ("1" * 64,))
    result = log.verify()
    assert (result.ok, result.bad_seq, result.entries) == (False, 2, 2)
    assert result.problem == (
        "entry 2 does not link to entry 1: entries were reordered, replaced or inserted"
    )


def test_verify_names_an_edited_entry_as_stored_now(engine, dbfile):
    log = AuditLog(engine)
    for _ in range(3):
        log.append(**_fields())
    ts = log.entries()[2].ts
    with sqlite3.connect(dbfile) as conn:
        conn.execute("UPDATE steward_audit SET actor = 'mallory' WHERE seq = 3")
    result = log.verify()
    assert (result.ok, result.bad_seq, result.entries) == (False, 3, 3)
    assert result.problem == (
        f"entry 3 does not match its hash: it was edited (set_alias on fraud by mallory at {ts} "
        "as stored now)"
    )
    assert result.head == {}


def test_verify_names_the_newest_entries_deleted(engine, dbfile):
    log = AuditLog(engine)
    entries = [log.append(**_fields()) for _ in range(3)]
    with sqlite3.connect(dbfile) as conn:
        conn.execute("DELETE FROM steward_audit WHERE seq = 3")
    result = log.verify()
    assert (result.ok, result.bad_seq, result.entries) == (False, 3, 2)
    assert result.problem == (
        "the chain ends at entry 2 but the head records entry 3: the newest entries were "
        "deleted or the head was edited"
    )
    assert result.head == {"seq": 3, "hash": entries[2].hash}


def test_verify_names_an_entry_beyond_the_head_and_shows_the_head(engine, dbfile):
    log = AuditLog(engine)
    first = log.append(**_fields())
    log.append(**_fields())
    with sqlite3.connect(dbfile) as conn:
        conn.execute("UPDATE steward_audit_head SET seq = 1, hash = ?", (first.hash,))
    result = log.verify()
    assert (result.ok, result.bad_seq, result.entries) == (False, 2, 1)
    assert result.head == {"seq": 1, "hash": first.hash}
    assert result.problem == (
        "entry 2 comes after the head, which records entry 1: the head was edited"
    )


def test_verify_names_a_head_whose_hash_was_edited(engine, dbfile):
    log = AuditLog(engine)
    for _ in range(2):
        log.append(**_fields())
    with sqlite3.connect(dbfile) as conn:
        conn.execute("UPDATE steward_audit_head SET hash = ?", ("2" * 64,))
    result = log.verify()
    assert (result.ok, result.bad_seq) == (False, 3)
    assert result.head == {"seq": 2, "hash": "2" * 64}
    assert "the head records entry 2" in result.problem


# -- alias history ------------------------------------------------------------------------------


def _move(conn, **over):
    history.insert_move(
        conn,
        **{
            "model": "fraud",
            "alias": "production",
            "version": "2",
            "previous_version": "1",
            "kind": "set",
            "actor": "alice",
            "audit_seq": 1,
            **over,
        },
    )


def test_history_records_every_field_of_a_move_in_order(engine):
    with engine.begin() as conn:
        _move(conn)
        _move(
            conn,
            alias=None,
            stage="Production",
            version="3",
            previous_version=None,
            kind="stage",
            audit_seq=2,
        )
        _move(conn, alias="staging", version="4", previous_version=None, actor="bob", audit_seq=3)
        _move(conn, version="9", audit_seq=4, workspace="w2")
        _move(conn, model="other", audit_seq=5)
    found = history.history(engine, "fraud")
    assert [
        (h.alias, h.stage, h.version, h.previous_version, h.kind, h.actor, h.audit_seq)
        for h in found
    ] == [
        ("production", None, "2", "1", "set", "alice", 1),
        (None, "Production", "3", None, "stage", "alice", 2),
        ("staging", None, "4", None, "set", "bob", 3),
    ]
    assert all(h.model == "fraud" and h.workspace == "default" and TS.match(h.ts) for h in found)
    assert [h.version for h in history.history(engine, "fraud", alias="staging")] == ["4"]
    w2 = history.history(engine, "fraud", workspace="w2")
    assert [(h.version, h.workspace) for h in w2] == [("9", "w2")]
    d = found[0].to_dict()
    assert d == {
        "model": "fraud",
        "alias": "production",
        "stage": None,
        "version": "2",
        "previous_version": "1",
        "kind": "set",
        "actor": "alice",
        "ts": found[0].ts,
        "audit_seq": 1,
        "workspace": "default",
    }


def test_last_version_is_the_newest_move_of_that_alias(engine):
    with engine.begin() as conn:
        assert history.last_version(conn, "fraud", "production") is None
        _move(conn, version="2")
        _move(conn, version="5")
        _move(conn, alias="staging", version="7")
        _move(conn, model="other", version="8")
        _move(conn, version="9", workspace="w2")
        assert history.last_version(conn, "fraud", "production") == "5"
        assert history.last_version(conn, "fraud", "staging") == "7"
        assert history.last_version(conn, "fraud", "production", "w2") == "9"
        _move(conn, version=None, kind="delete")
        assert history.last_version(conn, "fraud", "production") is None


def test_rename_model_moves_history_and_reviews_of_that_workspace_only(engine):
    with engine.begin() as conn:
        _move(conn)
        _move(conn, workspace="w2")
        _move(conn, model="keep")
        approvals.insert_approval(
            conn, model="fraud", version="2", alias="p", approver="a", comment="", audit_seq=1
        )
        approvals.insert_approval(
            conn,
            model="fraud",
            version="2",
            alias="p",
            approver="a",
            comment="",
            audit_seq=1,
            workspace="w2",
        )
        history.rename_model(conn, "fraud", "scam")
    assert history.history(engine, "fraud") == []
    assert len(history.history(engine, "scam")) == 1
    assert len(history.history(engine, "fraud", workspace="w2")) == 1
    assert len(history.history(engine, "keep")) == 1
    assert [a.model for a in approvals.list_reviews(engine)] == ["scam"]
    assert [a.model for a in approvals.list_reviews(engine, workspace="w2")] == ["fraud"]
    with engine.begin() as conn:
        history.rename_model(conn, "fraud", "w2-renamed", "w2")
    assert len(history.history(engine, "w2-renamed", workspace="w2")) == 1


def _h(kind: str, version: str | None, previous: str | None) -> history.HistoryEntry:
    return history.HistoryEntry("m", "p", None, version, previous, kind, "a", "t", 1)


def test_rollback_target_walks_back_promotions_not_rollbacks():
    entries = [_h("set", "1", None), _h("set", "2", "1"), _h("set", "3", "2")]
    assert history.rollback_target(entries, "3") == "2"
    entries.append(_h("rollback", "2", "3"))
    # rolled back to 2: the next rollback goes to what 2 replaced, not back to 3
    assert history.rollback_target(entries, "2") == "1"
    assert history.rollback_target(entries, "1") is None
    assert history.rollback_target(entries, "9") is None
    assert history.rollback_target([], "1") is None
    # the newest promotion of the version counts
    again = [_h("set", "2", "1"), _h("set", "5", "2"), _h("set", "2", "5")]
    assert history.rollback_target(again, "2") == "5"
    assert history.rollback_target([_h("delete", "2", "1")], "2") is None


# -- review entries -----------------------------------------------------------------------------


def _approve(conn, **over):
    approvals.insert_approval(
        conn,
        **{
            "model": "fraud",
            "version": "3",
            "alias": "production",
            "approver": "bob",
            "comment": "ok",
            "audit_seq": 1,
            **over,
        },
    )


def test_review_entries_keep_every_binding_and_filter_on_each(engine):
    import time

    before = time.time()
    with engine.begin() as conn:
        _approve(conn)
        _approve(
            conn, approver="carol", verdict="reject", comment="no", model_created=123, digest="d1"
        )
        _approve(conn, version=4)
        _approve(conn, alias="staging")
        _approve(conn, action="delete_alias")
        _approve(conn, model="other")
        _approve(conn, workspace="w2")
    after = time.time()
    found = approvals.list_approvals(engine, "fraud", "3", "production")
    assert [(a.approver, a.verdict, a.comment, a.model_created, a.digest) for a in found] == [
        ("bob", "approve", "ok", None, None),
        ("carol", "reject", "no", 123, "d1"),
    ]
    assert all(
        (a.model, a.version, a.alias, a.action, a.workspace)
        == ("fraud", "3", "production", "set_alias", "default")
        for a in found
    )
    assert all(before <= a.created <= after for a in found)
    assert found[0].created <= found[1].created
    assert [a.version for a in approvals.list_approvals(engine, "fraud", 4, "production")] == ["4"]
    assert len(approvals.list_approvals(engine, "fraud", "3", "staging")) == 1
    (demotion,) = approvals.list_approvals(
        engine, "fraud", "3", "production", action="delete_alias"
    )
    assert demotion.action == "delete_alias"
    w2 = approvals.list_approvals(engine, "fraud", "3", "production", workspace="w2")
    assert [a.workspace for a in w2] == ["w2"]
    assert approvals.list_approvals(engine, "fraud", "5", "production") == []


def test_list_reviews_by_workspace_model_and_age(engine, dbfile):
    with engine.begin() as conn:
        _approve(conn)
        _approve(conn, model="other")
        _approve(conn, workspace="w2")
    with sqlite3.connect(dbfile) as conn:
        conn.execute(
            "UPDATE steward_approvals SET created = 100 WHERE model = 'fraud' AND workspace = 'default'"
        )
        conn.execute("UPDATE steward_approvals SET created = 200 WHERE model = 'other'")
        conn.execute("UPDATE steward_approvals SET created = 300 WHERE workspace = 'w2'")
    assert [a.model for a in approvals.list_reviews(engine)] == ["fraud", "other"]
    assert [a.model for a in approvals.list_reviews(engine, "other")] == ["other"]
    assert [a.workspace for a in approvals.list_reviews(engine, workspace=None)] == [
        "default",
        "default",
        "w2",
    ]
    assert [a.model for a in approvals.list_reviews(engine, since=200)] == ["other"]
    assert [a.created for a in approvals.list_reviews(engine, since=100.0)] == [100, 200]
    assert approvals.list_reviews(engine, since=201) == []
    assert [
        a.created for a in approvals.list_reviews(engine, "fraud", since=250, workspace=None)
    ] == [300]


# -- pending writes -----------------------------------------------------------------------------


def test_pending_rows_keep_the_event_its_decision_and_their_writer(engine):
    event = make_event(
        "set_alias",
        "fraud",
        actor="alice",
        version="3",
        alias="production",
        context={"rollback": True, "when": datetime(2026, 1, 1, tzinfo=UTC)},
        workspace="w2",
    )
    outcome = PolicyOutcome("p", "use-p", "plug", True, "ok")
    first = pending_writes.insert(engine, event, Decision(event, (outcome,)))
    other = make_event("delete_alias", "other", alias="staging")
    second = pending_writes.insert(engine, other, Decision(other, ()))
    assert second > first
    rows = pending_writes.pending(engine)
    assert [r.id for r in rows] == [first, second]
    row = rows[0]
    assert (row.actor, row.action, row.model, row.version, row.alias) == (
        "alice",
        "set_alias",
        "fraud",
        "3",
        "production",
    )
    assert row.details == {"rollback": True, "when": "2026-01-01 00:00:00+00:00"}
    assert row.reasons == [outcome.to_dict()]
    assert (
        row.owner == f"{socket.gethostname()}:{__import__('os').getpid()}" == pending_writes.owner()
    )
    assert TS.match(row.ts)
    assert [r.id for r in pending_writes.pending(engine, "other")] == [second]
    assert rows[1].version is None
    assert rows[1].reasons == []
    with engine.begin() as conn:
        assert pending_writes.any_pending(conn, "fraud") is True
        assert pending_writes.any_pending(conn, "nobody") is False
        pending_writes.delete(conn, first)
        assert pending_writes.any_pending(conn, "fraud") is False
        assert pending_writes.any_pending(conn, "other") is True
    assert [r.id for r in pending_writes.pending(engine)] == [second]
    with sqlite3.connect(Path(str(engine.url.database))) as conn:
        assert conn.execute("SELECT workspace FROM steward_pending_writes").fetchall() == [
            ("default",)
        ]
    assert (
        json.loads(
            sqlite3.connect(Path(str(engine.url.database)))
            .execute("SELECT details FROM steward_pending_writes")
            .fetchone()[0]
        )
        == {}
    )
