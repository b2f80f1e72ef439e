"""Recovery of interrupted governed writes (governance/recovery.py), unit by unit: ``check``
reads back each kind of action from a registry (an in-memory stand-in for MLflow's store that
answers as MLflow does), ``complete`` appends the entry, the alias move and deletes the pending
row in one transaction. The end-to-end recovery (killed processes) is tests/test_recovery.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2

from mlflow_steward.governance import recovery
from mlflow_steward.plugins.events import Decision, PolicyOutcome
from mlflow_steward.plugins.testing import make_event
from mlflow_steward.records import approvals, db, history, pending_writes
from mlflow_steward.records.audit import AuditLog
from mlflow_steward.records.pending_writes import PendingWrite


def _missing(what: str) -> MlflowException:
    return MlflowException(f"{what} not found", error_code=databricks_pb2.RESOURCE_DOES_NOT_EXIST)


@dataclass
class FakeRegistry:
    """What recovery reads of MLflow's registry store, with MLflow's not-found errors."""

    models: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> tags
    versions: dict[tuple[str, str], SimpleNamespace] = field(default_factory=dict)
    aliases: dict[tuple[str, str], str] = field(default_factory=dict)
    searched: list[str] = field(default_factory=list)
    fail_with: str | None = None

    def add_version(
        self, name: str, version: str, source: str = "s3://x", stage: str = "None", **tags: str
    ):
        self.models.setdefault(name, {})
        self.versions[(name, version)] = SimpleNamespace(
            version=int(version), source=source, current_stage=stage, tags=dict(tags)
        )

    def get_registered_model(self, name: str) -> SimpleNamespace:
        if self.fail_with:
            raise MlflowException("boom", error_code=getattr(databricks_pb2, self.fail_with))
        if name not in self.models:
            raise _missing(f"model {name}")
        return SimpleNamespace(name=name, tags=self.models[name])

    def get_model_version(self, name: str, version: str) -> SimpleNamespace:
        if (name, str(version)) not in self.versions:
            raise _missing(f"version {name}/{version}")
        return self.versions[(name, str(version))]

    def get_model_version_by_alias(self, name: str, alias: str) -> SimpleNamespace:
        if (name, alias) not in self.aliases:
            raise _missing(f"alias {alias}")
        return self.versions[(name, self.aliases[(name, alias)])]

    def search_model_versions(self, filter_string: str) -> list[SimpleNamespace]:
        self.searched.append(filter_string)
        name = filter_string.removeprefix("name='").removesuffix("'").replace("\\'", "'")
        return [v for (n, _), v in self.versions.items() if n == name]


def _pending(
    action: str,
    model: str = "fraud",
    version: str | None = "2",
    alias: str | None = None,
    **details,
) -> PendingWrite:
    return PendingWrite(
        id=1,
        ts="2026-01-01T00:00:00.000000Z",
        actor="alice",
        action=action,
        model=model,
        version=version,
        alias=alias,
        details=details,
        reasons=[],
        owner="host:1",
    )


def _never() -> set[str]:
    raise AssertionError("audited versions are read only for create_model_version")


@pytest.fixture
def reg() -> FakeRegistry:
    r = FakeRegistry()
    r.add_version("fraud", "1", tagged="yes")
    r.add_version("fraud", "2", stage="Production")
    r.models["fraud"]["owner"] = "team"
    r.aliases[("fraud", "production")] = "2"
    return r


def test_alias_moves_are_read_back_from_the_alias(reg):
    assert recovery.check(reg, _pending("set_alias", alias="production"), _never) == (True, "2")
    assert recovery.check(reg, _pending("set_alias", version="1", alias="production"), _never) == (
        False,
        "1",
    )
    assert recovery.check(reg, _pending("set_alias", alias="staging"), _never) == (False, "2")
    assert recovery.check(reg, _pending("delete_alias", alias="staging"), _never) == (True, "2")
    assert recovery.check(reg, _pending("delete_alias", alias="production"), _never) == (False, "2")
    # a pending row without an alias reads the empty alias, which nothing holds
    assert recovery.check(reg, _pending("delete_alias", alias=None), _never) == (True, "2")
    assert recovery.check(reg, _pending("set_alias", alias=None), _never) == (False, "2")


def test_version_tags_are_read_back_from_the_version(reg):
    set_tag = _pending("set_model_version_tag", version="1", tag_key="tagged", tag_value="yes")
    assert recovery.check(reg, set_tag, _never) == (True, "1")
    other_value = _pending("set_model_version_tag", version="1", tag_key="tagged", tag_value="no")
    assert recovery.check(reg, other_value, _never) == (False, "1")
    absent = _pending("set_model_version_tag", version="2", tag_key="tagged", tag_value="yes")
    assert recovery.check(reg, absent, _never) == (False, "2")
    deleted = _pending("delete_model_version_tag", version="2", tag_key="tagged")
    assert recovery.check(reg, deleted, _never) == (True, "2")
    still_there = _pending("delete_model_version_tag", version="1", tag_key="tagged")
    assert recovery.check(reg, still_there, _never) == (False, "1")


def test_model_tags_are_read_back_from_the_registered_model(reg):
    assert recovery.check(
        reg, _pending("set_registered_model_tag", tag_key="owner", tag_value="team"), _never
    ) == (True, "2")
    assert recovery.check(
        reg, _pending("set_registered_model_tag", tag_key="owner", tag_value="x"), _never
    ) == (False, "2")
    assert recovery.check(
        reg, _pending("set_registered_model_tag", tag_key="none", tag_value="team"), _never
    ) == (False, "2")
    assert recovery.check(reg, _pending("delete_registered_model_tag", tag_key="none"), _never) == (
        True,
        "2",
    )
    assert recovery.check(
        reg, _pending("delete_registered_model_tag", tag_key="owner"), _never
    ) == (False, "2")


def test_models_created_deleted_and_renamed(reg):
    assert recovery.check(reg, _pending("create_registered_model", version=None), _never) == (
        True,
        None,
    )
    assert recovery.check(
        reg, _pending("create_registered_model", model="new", version=None), _never
    ) == (False, None)
    assert recovery.check(reg, _pending("delete_registered_model", model="gone"), _never) == (
        True,
        "2",
    )
    assert recovery.check(reg, _pending("delete_registered_model"), _never) == (False, "2")
    renamed = _pending("rename_registered_model", model="old", new_name="fraud")
    assert recovery.check(reg, renamed, _never) == (True, "2")
    not_renamed = _pending("rename_registered_model", new_name="scam")
    assert recovery.check(reg, not_renamed, _never) == (False, "2")
    lost = _pending("rename_registered_model", model="old", new_name="nowhere")
    assert recovery.check(reg, lost, _never) == (False, "2")


def test_versions_deleted_and_stages_moved(reg):
    assert recovery.check(reg, _pending("delete_model_version", version="7"), _never) == (True, "7")
    assert recovery.check(reg, _pending("delete_model_version", version="1"), _never) == (
        False,
        "1",
    )
    assert recovery.check(reg, _pending("transition_stage", stage="production"), _never) == (
        True,
        "2",
    )
    assert recovery.check(reg, _pending("transition_stage", stage="Staging"), _never) == (
        False,
        "2",
    )
    assert recovery.check(reg, _pending("transition_stage", version="1"), _never) == (False, "1")


def test_a_created_version_is_the_oldest_unaudited_one_from_the_same_source(reg):
    reg.add_version("fraud", "3", source="s3://new")
    reg.add_version("fraud", "10", source="s3://new")
    reg.add_version("fraud", "4", source="s3://other")
    p = _pending("create_model_version", version=None, source="s3://new")
    assert recovery.check(reg, p, lambda: set()) == (True, "3")
    assert recovery.check(reg, p, lambda: {"3"}) == (True, "10")  # by number, not as text
    assert recovery.check(reg, p, lambda: {"3", "10"}) == (False, None)
    assert recovery.check(
        reg, _pending("create_model_version", version=None, source="s3://none"), lambda: set()
    ) == (False, None)
    assert recovery.check(
        reg, _pending("create_model_version", model="nomodel", version=None), _never
    ) == (False, None)
    reg.add_version("o'brien", "1", source="s3://q")
    quoted = _pending("create_model_version", model="o'brien", version=None, source="s3://q")
    assert recovery.check(reg, quoted, lambda: set()) == (True, "1")
    assert reg.searched[-1] == "name='o\\'brien'"


def test_actions_that_cannot_be_read_back_are_unknown(reg):
    assert recovery.check(reg, _pending("update_model_version"), _never) == (None, "2")
    assert recovery.check(reg, _pending("deploy", version="5"), _never) == (None, "5")


def test_other_registry_errors_are_not_taken_for_missing(reg):
    reg.fail_with = "INTERNAL_ERROR"
    with pytest.raises(MlflowException, match="boom"):
        recovery.check(reg, _pending("delete_registered_model"), _never)
    reg.fail_with = "INVALID_PARAMETER_VALUE"  # MLflow's answer for some missing entities
    assert recovery.check(reg, _pending("delete_registered_model"), _never) == (True, "2")


# -- complete ---------------------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    yield db.get_engine(f"sqlite:///{tmp_path / 'r.db'}")
    db.dispose_engines()


def _insert(engine, action: str, **fields) -> PendingWrite:
    event = make_event(action, "fraud", actor="alice", **fields)
    outcome = PolicyOutcome("p", "use-p", "plug", True, "ok")
    pid = pending_writes.insert(engine, event, Decision(event, (outcome,)))
    (row,) = [r for r in pending_writes.pending(engine) if r.id == pid]
    return row


@pytest.mark.parametrize(
    ("applied", "outcome"),
    [(True, "applied"), (False, recovery.NOT_APPLIED), (None, recovery.UNKNOWN)],
)
def test_complete_appends_the_entry_and_deletes_the_row(engine, applied, outcome):
    audit = AuditLog(engine)
    row = _insert(engine, "update_model_version", version="2", context={"description": "d"})
    entry = recovery.complete(audit, row, applied, "2")
    assert (entry.actor, entry.action, entry.model, entry.version, entry.alias) == (
        "alice",
        "update_model_version",
        "fraud",
        "2",
        None,
    )
    assert (entry.decision, entry.outcome) == ("allowed", outcome)
    assert entry.reasons == [PolicyOutcome("p", "use-p", "plug", True, "ok").to_dict()]
    assert entry.details == {
        "description": "d",
        "recovered": {"interrupted": row.ts, "writer": row.owner, "by": pending_writes.owner()},
    }
    assert pending_writes.pending(engine) == []
    assert audit.verify().ok
    assert history.history(engine, "fraud") == []


def test_outcomes_say_what_recovery_found():
    assert (
        recovery.NOT_APPLIED
        == "failed: interrupted; the registry does not show the change (recovered)"
    )
    assert recovery.UNKNOWN.startswith("unknown: interrupted;")


def test_an_applied_alias_move_is_recorded_in_history(engine):
    audit = AuditLog(engine)
    with engine.begin() as conn:
        history.insert_move(
            conn,
            model="fraud",
            alias="production",
            version="1",
            previous_version=None,
            kind="set",
            actor="a",
            audit_seq=0,
        )
    entry = recovery.complete(
        audit, _insert(engine, "set_alias", version="2", alias="production"), True, "2"
    )
    rollback = recovery.complete(
        audit,
        _insert(engine, "set_alias", version="1", alias="production", context={"rollback": True}),
        True,
        "1",
    )
    deleted = recovery.complete(
        audit, _insert(engine, "delete_alias", version="1", alias="production"), True, "1"
    )
    moves = history.history(engine, "fraud")[1:]
    assert [
        (m.alias, m.version, m.previous_version, m.kind, m.actor, m.audit_seq) for m in moves
    ] == [
        ("production", "2", "1", "set", "alice", entry.seq),
        ("production", "1", "2", "rollback", "alice", rollback.seq),
        ("production", None, "1", "delete", "alice", deleted.seq),
    ]
    # not applied, or without an alias: no move
    recovery.complete(
        audit, _insert(engine, "set_alias", version="3", alias="production"), False, "3"
    )
    recovery.complete(
        audit, _insert(engine, "set_alias", version="3", alias="production"), None, "3"
    )
    assert len(history.history(engine, "fraud")) == 4
    assert pending_writes.pending(engine) == []


def test_an_applied_stage_transition_is_recorded_in_history(engine):
    audit = AuditLog(engine)
    entry = recovery.complete(
        audit, _insert(engine, "transition_stage", version="2", stage="Production"), True, "2"
    )
    (move,) = history.history(engine, "fraud")
    assert (
        move.alias,
        move.stage,
        move.version,
        move.previous_version,
        move.kind,
        move.actor,
        move.audit_seq,
    ) == (
        None,
        "Production",
        "2",
        None,
        "stage",
        "alice",
        entry.seq,
    )
    recovery.complete(
        audit, _insert(engine, "transition_stage", version="3", stage="Staging"), False, "3"
    )
    assert len(history.history(engine, "fraud")) == 1


def test_an_applied_rename_carries_history_and_reviews(engine):
    audit = AuditLog(engine)
    with engine.begin() as conn:
        history.insert_move(
            conn,
            model="fraud",
            alias="p",
            version="1",
            previous_version=None,
            kind="set",
            actor="a",
            audit_seq=0,
        )
        approvals.insert_approval(
            conn, model="fraud", version="1", alias="p", approver="b", comment="", audit_seq=0
        )
    recovery.complete(
        audit, _insert(engine, "rename_registered_model", new_name="scam"), False, None
    )
    assert len(history.history(engine, "fraud")) == 1
    recovery.complete(
        audit, _insert(engine, "rename_registered_model", new_name="scam"), True, None
    )
    assert history.history(engine, "fraud") == []
    assert [h.model for h in history.history(engine, "scam")] == ["scam"]
    assert [a.model for a in approvals.list_reviews(engine)] == ["scam"]
    assert pending_writes.pending(engine) == []
