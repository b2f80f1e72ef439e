"""Monitor rules and the built-in actions, unit by unit: ``apply_rules`` (hysteresis, cooldown,
the no-verdict guard, failures reported and the next action still run, every action as
steward-monitor) and tag / demote / rollback / alert against stand-ins for the session's store.
The end-to-end behaviour (real models, real data) is tests/test_monitoring_rules.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2

from mlflow_steward.errors import MonitoringError
from mlflow_steward.governance import governor
from mlflow_steward.monitoring import actions, rules
from mlflow_steward.monitoring.monitors import ActionCall, Rule
from mlflow_steward.plugins.types import ActionContext
from mlflow_steward.records import db, monitor_runs
from mlflow_steward.records.history import HistoryEntry


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    yield db.get_engine(f"sqlite:///{tmp_path / 'r.db'}")
    db.dispose_engines()


@dataclass
class FakeStore:
    holders: dict[str, str] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)  # version -> tags
    calls: list[tuple] = field(default_factory=list)

    def holder_of(self, model: str, alias: str) -> str | None:
        return self.holders.get(alias) if model == "fraud" else None

    def set_steward_tag(self, model, version, key, value, *, actor):
        self.calls.append(("steward_tag", model, version, key, value, actor))

    def set_model_version_tag(self, model, version, tag):
        self.calls.append(("tag", model, version, tag.key, tag.value))

    def delete_registered_model_alias(self, model, alias):
        self.calls.append(("delete_alias", model, alias, governor.current_action_context()))

    def get_model_version(self, model, version):
        if model != "fraud" or version not in self.tags:
            raise MlflowException("gone", error_code=databricks_pb2.RESOURCE_DOES_NOT_EXIST)
        return SimpleNamespace(tags=self.tags[version])


@dataclass
class FakeSession:
    db_engine: sa.Engine
    store: FakeStore = field(default_factory=FakeStore)
    moves: list[HistoryEntry] = field(default_factory=list)
    rolled: list[tuple] = field(default_factory=list)
    blame: str | None = None

    def workspace(self) -> str:
        return "default"

    @property
    def pm(self):
        return SimpleNamespace(plugin_in_traceback=lambda exc: self.blame)

    def history(self, model, alias):
        return [m for m in self.moves if m.model == model and m.alias == alias]

    def rollback(self, model, alias, *, to_version, expect_current):
        self.rolled.append((model, alias, to_version, expect_current))


def _context(
    engine,
    *,
    status="drift",
    version="3",
    model_uri="models:/fraud@production",
    dry_run=False,
    rules_=(),
    session=None,
    alerters=None,
):
    monitor = SimpleNamespace(name="mon", model=model_uri, rules=list(rules_))
    return ActionContext(
        monitor=monitor,  # type: ignore[arg-type]
        model="fraud",
        version=version,
        status=status,
        drifted=("age",),
        share=0.5,
        run_id="r1",
        session=session or FakeSession(engine),  # type: ignore[arg-type]
        dry_run=dry_run,
        alerters=alerters or {},
        channels={},
    )


def _rule(index=1, when=("drift",), after=1, cooldown=0.0, calls=("a",)) -> Rule:
    return Rule(index, tuple(when), after, cooldown, tuple(ActionCall(c, None, ()) for c in calls))


def _record(engine, status, version="3", actions_=(), ts=1000.0):
    monitor_runs.record_run(
        engine,
        monitor="mon",
        model="fraud",
        version=version,
        status=status,
        run_id=None,
        actions=list(actions_),
        detail={},
        ts=ts,
    )


class Recorder:
    def __init__(self, result: Any = "done", error: Exception | None = None):
        self.result, self.error, self.seen = result, error, []

    def run(self, context, params):
        self.contexts = [*getattr(self, "contexts", []), context]
        self.seen.append((params, governor._request_actor.get()))
        if self.error is not None:
            raise self.error
        return self.result


# -- apply_rules --------------------------------------------------------------------------------


def test_a_rule_fires_on_its_status_and_acts_as_steward_monitor(engine):
    a, b = Recorder("did a"), Recorder("did b")
    ctx = _context(engine, rules_=[_rule(calls=("a", "b"))])
    done = rules.apply_rules(ctx, {"a": a, "b": b}, now=2000.0)
    assert done == [
        {"rule": 1, "action": "a", "ok": True, "result": "did a"},
        {"rule": 1, "action": "b", "ok": True, "result": "did b"},
    ]
    assert ctx.done == ["a: did a", "b: did b"]
    assert a.seen == [(None, "steward-monitor")]
    assert a.contexts == [ctx]
    assert governor._request_actor.get() is None  # only inside the action
    assert (
        rules.apply_rules(_context(engine, status="healthy", rules_=[_rule()]), {"a": a}, 2000.0)
        == []
    )


def test_hysteresis_waits_for_n_consecutive_runs_of_the_version(engine):
    a = Recorder()
    rule = _rule(when=("drift", "invalid"), after=3)
    ctx = _context(engine, rules_=[rule])
    assert rules.apply_rules(ctx, {"a": a}, 2000.0) == [
        {
            "rule": None,
            "action": "wait",
            "ok": True,
            "result": "rule 1: 1 of 3 consecutive drift/invalid runs",
        }
    ]
    _record(engine, "drift")
    assert (
        rules.apply_rules(ctx, {"a": a}, 2000.0)[0]["result"]
        == "rule 1: 2 of 3 consecutive drift/invalid runs"
    )
    _record(engine, "drift", version="2")  # another version's runs do not count
    _record(engine, "invalid")
    assert rules.apply_rules(ctx, {"a": a}, 2000.0)[0]["action"] == "a"
    _record(engine, "healthy")
    _record(engine, "drift")
    # newest first: drift, then healthy breaks the streak
    assert (
        rules.apply_rules(ctx, {"a": a}, 2000.0)[0]["result"]
        == "rule 1: 2 of 3 consecutive drift/invalid runs"
    )
    assert len(a.seen) == 1


def test_a_rule_for_another_status_does_not_stop_the_next_rule(engine):
    b = Recorder("did b")
    ctx = _context(engine, rules_=[_rule(index=1, when=("healthy",)), _rule(index=2, calls=("b",))])
    assert [d["action"] for d in rules.apply_rules(ctx, {"b": b}, 2000.0)] == ["b"]


def test_a_waiting_rule_does_not_stop_the_next_rule(engine):
    a, b = Recorder("did a"), Recorder("did b")
    ctx = _context(
        engine, rules_=[_rule(index=1, after=2, calls=("a",)), _rule(index=2, calls=("b",))]
    )
    done = rules.apply_rules(ctx, {"a": a, "b": b}, 2000.0)
    assert [d["action"] for d in done] == ["wait", "b"]


def test_cooldown_after_a_rule_acted(engine):
    a = Recorder()
    ctx = _context(engine, rules_=[_rule(index=2, cooldown=600.0), _rule(index=3)])
    _record(engine, "drift", actions_=[{"rule": 2, "action": "a"}], ts=1000.0)
    done = rules.apply_rules(ctx, {"a": a}, now=1500.0)
    assert done[0] == {
        "rule": None,
        "action": "cooldown",
        "ok": True,
        "result": "rule 2: cooling down until "
        + datetime.fromtimestamp(1600.0, UTC).isoformat(timespec="seconds"),
    }
    assert done[1]["rule"] == 3  # another rule is not cooling down
    assert rules.apply_rules(ctx, {"a": a}, now=1600.0)[0]["action"] == "a"  # exactly over
    assert rules.apply_rules(ctx, {"a": a}, now=1599.0)[0]["action"] == "cooldown"
    no_cooldown = _context(engine, rules_=[_rule(index=2)])
    assert rules.apply_rules(no_cooldown, {"a": a}, now=1001.0)[0]["action"] == "a"


def test_without_a_verdict_only_alerts_run(engine):
    alert, tag = Recorder("alerted"), Recorder("tagged")
    ctx = _context(
        engine,
        status="error",
        version=None,
        rules_=[_rule(when=("error",), calls=("tag", "alert"))],
    )
    assert rules.apply_rules(ctx, {"alert": alert, "tag": tag}, 2000.0) == [
        {"rule": 1, "action": "alert", "ok": True, "result": "alerted"}
    ]
    assert tag.seen == []
    for status in ("invalid", "insufficient data"):
        ctx = _context(engine, status=status, rules_=[_rule(when=(status,), calls=("tag",))])
        assert rules.apply_rules(ctx, {"tag": tag}, 2000.0) == []


def test_a_failing_action_is_reported_and_the_next_one_runs(engine, caplog):
    boom = Recorder(error=ValueError("bad"))
    refused = Recorder(error=MlflowException("refused by steward: x"))
    after = Recorder("still ran")
    ctx = _context(engine, rules_=[_rule(calls=("boom", "refused", "after"))])
    with caplog.at_level("WARNING"):
        done = rules.apply_rules(ctx, {"boom": boom, "refused": refused, "after": after}, 2000.0)
    assert done == [
        {"rule": 1, "action": "boom", "ok": False, "result": "ValueError: bad"},
        {
            "rule": 1,
            "action": "refused",
            "ok": False,
            "result": "MlflowException: refused by steward: x",
        },
        {"rule": 1, "action": "after", "ok": True, "result": "still ran"},
    ]
    assert ctx.done[0] == "boom: ValueError: bad"
    assert "monitor mon: action boom failed: ValueError: bad" in caplog.text
    session = FakeSession(engine, blame="team-plugin (distribution team-kit 1.0)")
    ctx = _context(engine, rules_=[_rule(calls=("boom",))], session=session)
    (only,) = rules.apply_rules(ctx, {"boom": boom}, 2000.0)
    assert (
        only["result"] == "plugin team-plugin (distribution team-kit 1.0) failed: ValueError: bad"
    )


def test_streak_counts_the_leading_matches():
    assert rules._streak([], ("drift",)) == 0
    assert rules._streak(["drift", "drift", "healthy", "drift"], ("drift",)) == 2
    assert rules._streak(["healthy", "drift"], ("drift",)) == 0


def test_the_built_in_actions_are_registered():
    declared = {a.name: a for a in rules.steward_monitor_actions()}
    assert list(declared) == ["tag", "alert", "demote", "rollback", "retrain"]
    assert declared["tag"].run is actions.tag
    assert declared["rollback"].run is actions.rollback
    assert {o.name: o.default for o in declared["tag"].options} == {
        "key": actions.FLAG_TAG,
        "value": None,
    }
    assert {o.name: o.default for o in declared["rollback"].options} == {
        "alias": None,
        "deployments": True,
    }
    assert declared["retrain"].options[0].choices == ("local", "virtualenv", "uv", "conda")


# -- tag ----------------------------------------------------------------------------------------


def test_tag_defaults_to_the_flag_tag_with_status_and_time(engine):
    ctx = _context(engine)
    out = actions.tag(ctx, None)
    ((kind, model, version, key, value, actor),) = ctx.session.store.calls
    assert (kind, model, version, key, actor) == (
        "steward_tag",
        "fraud",
        "3",
        "steward.monitor.flag",
        "steward-monitor",
    )
    assert value.startswith("drift 20")
    assert out == f"tagged v3 steward.monitor.flag={value}"
    ctx = _context(engine)
    assert actions.tag(ctx, {"key": "quality", "value": "poor"}) == "tagged v3 quality=poor"
    assert ctx.session.store.calls == [("tag", "fraud", "3", "quality", "poor")]
    dry = _context(engine, dry_run=True)
    assert actions.tag(dry, {"key": "k", "value": "v"}) == "would tag v3 k=v"
    assert dry.session.store.calls == []
    with pytest.raises(MonitoringError, match="tag: the monitored version is not known"):
        actions.tag(_context(engine, version=None), {"key": "k", "value": "v"})


# -- demote -------------------------------------------------------------------------------------


def test_demote_removes_the_monitored_alias_from_its_holder(engine):
    ctx = _context(engine)
    ctx.session.store.holders["production"] = "3"
    assert actions.demote(ctx, None) == "removed @production from v3"
    assert ctx.session.store.calls == [
        ("delete_alias", "fraud", "production", {"expect_holder": "3"})
    ]
    ctx.session.store.holders["staging"] = "3"
    assert actions.demote(ctx, {"alias": "staging"}) == "removed @staging from v3"
    dry = _context(engine, dry_run=True)
    dry.session.store.holders["production"] = "3"
    assert actions.demote(dry, {}) == "would remove @production from v3"
    assert dry.session.store.calls == []
    moved = _context(engine)
    moved.session.store.holders["production"] = "4"
    assert actions.demote(moved, None) == "@production is held by 4, not v3: nothing to demote"
    assert (
        actions.demote(_context(engine), "x")
        == "@production is held by nobody, not v3: nothing to demote"
    )
    with pytest.raises(
        MonitoringError,
        match=r"demote needs an alias: monitor models:/NAME@ALIAS or give \{alias:\}",
    ):
        actions.demote(_context(engine, model_uri="models:/fraud/3"), None)


# -- rollback -----------------------------------------------------------------------------------


def _move(kind, version, previous):
    return HistoryEntry("fraud", "production", None, version, previous, kind, "a", "t", 1)


def _rollback_ctx(engine, moves, tags, **kw):
    session = FakeSession(engine, moves=moves)
    session.store.holders["production"] = "3"
    session.store.tags = tags
    return _context(engine, session=session, **kw)


def test_rollback_goes_to_the_newest_earlier_healthy_holder(engine):
    moves = [_move("set", "1", None), _move("set", "2", "1"), _move("set", "3", "2")]
    ctx = _rollback_ctx(engine, moves, {"1": {}, "2": {}, "3": {}})
    assert actions.rollback(ctx, {"deployments": False}) == "moved @production from v3 back to v2"
    assert ctx.session.rolled == [("fraud", "production", "2", "3")]
    dry = _rollback_ctx(engine, moves, {"1": {}, "2": {}, "3": {}}, dry_run=True)
    assert actions.rollback(dry, None) == "would move @production from v3 back to v2"
    assert dry.session.rolled == []


def test_rollback_skips_drifted_deleted_and_rolled_back_from_versions(engine):
    moves = [
        _move("set", "1", None),
        _move("set", "2", "1"),
        _move("set", "5", "2"),
        _move("rollback", "4", "5"),
        _move("set", "3", "4"),
    ]
    tags = {"1": {}, "2": {"steward.monitor.status": "drift"}, "3": {}, "4": {}, "5": {}}
    session = FakeSession(engine, moves=moves)
    session.store.tags = tags
    # 4: its last monitor verdict was invalid; 5 was rolled back from; 2 drifted (tag)
    _record(engine, "healthy", version="4")
    _record(engine, "invalid", version="4")
    assert actions.healthy_previous_holder(session, "fraud", "production", "3") == "1"
    _record(engine, "healthy", version="4")
    assert actions.healthy_previous_holder(session, "fraud", "production", "3") == "4"
    tags["4"] = {"steward.monitor.status": "invalid"}
    del tags["1"]  # deleted since
    del tags["5"]
    assert actions.healthy_previous_holder(session, "fraud", "production", "3") is None
    ctx = _rollback_ctx(engine, moves, tags)
    with pytest.raises(
        MonitoringError, match="no earlier healthy holder of @production on 'fraud' to roll back to"
    ):
        actions.rollback(ctx, {"deployments": False})


def test_rollback_moves_the_alias_it_is_given(engine):
    moves = [
        HistoryEntry("fraud", "staging", None, "2", None, "set", "a", "t", 1),
        HistoryEntry("fraud", "staging", None, "3", "2", "set", "a", "t", 2),
        _move("set", "3", "1"),
    ]
    ctx = _rollback_ctx(engine, moves, {"1": {}, "2": {}, "3": {}})
    ctx.session.store.holders["staging"] = "3"
    out = actions.rollback(ctx, {"alias": "staging", "deployments": False})
    assert out == "moved @staging from v3 back to v2"
    assert ctx.session.rolled == [("fraud", "staging", "2", "3")]


def test_rollback_does_nothing_when_the_alias_moved_on(engine):
    ctx = _rollback_ctx(engine, [], {})
    ctx.session.store.holders["production"] = "9"
    assert actions.rollback(ctx, None) == "@production is held by 9, not v3: no rollback"
    with pytest.raises(MonitoringError, match="rollback: the monitored version is not known"):
        actions.monitored_version(_context(engine, version=None), "rollback")


def test_rollback_updates_the_deployments_serving_the_alias(engine, monkeypatch):
    import mlflow_steward.deployment.host as host_module

    updated = []

    class Host:
        def __init__(self, session):
            self.store = SimpleNamespace(
                list=lambda _ws: [
                    SimpleNamespace(name="web", requested="models:/fraud@production"),
                    SimpleNamespace(name="pinned", requested="models:/fraud/3"),
                    SimpleNamespace(name="edge", requested="models:/fraud@production"),
                    SimpleNamespace(name="lab", requested="models:/fraud@production"),
                ]
            )

        def update(self, name, uri):
            updated.append((name, uri))
            if name == "edge":
                raise MlflowException("target down")
            if name == "lab":
                raise RuntimeError("no route")  # an error without a .message
            return SimpleNamespace(version="2")

    monkeypatch.setattr(host_module, "DeploymentHost", Host)
    moves = [_move("set", "2", None), _move("set", "3", "2")]
    ctx = _rollback_ctx(engine, moves, {"2": {}})
    assert actions.rollback(ctx, {}) == (
        "moved @production from v3 back to v2; deployment web now serves v2, "
        "edge NOT updated (MlflowException: target down), lab NOT updated (RuntimeError: no route)"
    )
    assert updated == [(name, "models:/fraud@production") for name in ("web", "edge", "lab")]
    updated.clear()
    ctx = _rollback_ctx(engine, moves, {"2": {}})
    assert actions.rollback(ctx, {"deployments": False}) == "moved @production from v3 back to v2"
    assert updated == []


# -- alert --------------------------------------------------------------------------------------


def test_alert_delivers_to_the_targets_and_reports_each(engine, monkeypatch):
    import mlflow_steward.monitoring.alerting as alerting

    sent = []

    def deliver(alert, targets, alerters, channels):
        sent.append((alert.status, list(targets)))
        return [
            SimpleNamespace(alerter="ops", ok=True, attempts=1, error=None),
            SimpleNamespace(alerter="mail", ok=False, attempts=3, error="timeout"),
        ]

    monkeypatch.setattr(alerting, "deliver", deliver)
    alerters = {"ops": object(), "mail": object()}
    ctx = _context(engine, alerters=alerters)
    assert actions.alert(ctx, None) == "alerted ops ok, mail FAILED after 3 tries (timeout)"
    assert sent == [("drift", ["mail", "ops"])]
    assert (
        actions.alert(_context(engine, alerters=alerters, dry_run=True), ["ops"])
        == "would alert ops"
    )
    assert len(sent) == 1
