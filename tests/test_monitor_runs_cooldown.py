"""``monitor_runs.last_fired``: a rule acted *after* ``since`` (as its docstring and the rule's
"acted less than cooldown ago" say), not at it: exactly one cooldown later the rule may act."""

from __future__ import annotations

from pathlib import Path

from mlflow_steward.records import db, monitor_runs


def test_a_rule_that_acted_exactly_one_cooldown_ago_is_not_cooling_down(tmp_path: Path):
    engine = db.get_engine(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        monitor_runs.record_run(
            engine,
            monitor="mon",
            model="m",
            version="1",
            status="drift",
            run_id=None,
            actions=[{"rule": 1, "action": "tag"}],
            detail={},
            ts=1000.0,
        )
        assert monitor_runs.last_fired(engine, "mon", 1, since=999.5) == 1000.0
        assert monitor_runs.last_fired(engine, "mon", 1, since=1000.0) is None
        assert monitor_runs.last_fired(engine, "mon", 2, since=0.0) is None
        assert monitor_runs.last_fired(engine, "other", 1, since=0.0) is None
    finally:
        db.dispose_engines()
