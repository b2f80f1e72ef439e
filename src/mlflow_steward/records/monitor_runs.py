"""Monitor runs: every run of a configured monitor, its verdict and what its rules did. Rule
streaks (hysteresis) and cooldowns are read from here, so they hold across processes and
restarts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlflow_steward.plugins.events import DEFAULT_WORKSPACE
from mlflow_steward.records import db, schema


def recent_statuses(
    engine: Engine,
    monitor: str,
    version: str | None,
    limit: int,
    workspace: str = DEFAULT_WORKSPACE,
) -> list[str]:
    """The newest ``limit`` statuses of ``monitor`` on ``version`` in ``workspace``, newest first
    (a streak starts again when the monitored alias moves to another version)."""
    query = (
        sa.select(schema.monitor_runs.c.status)
        .where(
            schema.monitor_runs.c.workspace == workspace,
            schema.monitor_runs.c.monitor == monitor,
            schema.monitor_runs.c.version.is_(None)
            if version is None
            else schema.monitor_runs.c.version == version,
        )
        .order_by(schema.monitor_runs.c.id.desc())
        .limit(limit)
    )
    with db.reading(engine) as conn:
        return [r.status for r in conn.execute(query)]


def last_run(engine: Engine, monitor: str, workspace: str = DEFAULT_WORKSPACE) -> float | None:
    """When ``monitor`` last judged data (healthy, drift or degraded) in ``workspace``, or ``None``: a
    failed or insufficient run does not move a ``since-last-run`` window, so no data is skipped."""
    query = sa.select(sa.func.max(schema.monitor_runs.c.ts)).where(
        schema.monitor_runs.c.workspace == workspace,
        schema.monitor_runs.c.monitor == monitor,
        schema.monitor_runs.c.status.in_(("healthy", "drift", "degraded")),
    )
    with db.reading(engine) as conn:
        return conn.execute(query).scalar()


def last_fired(
    engine: Engine, monitor: str, rule: int, since: float, workspace: str = DEFAULT_WORKSPACE
) -> float | None:
    """When rule ``rule`` of ``monitor`` last acted (dry runs included) in ``workspace``, if
    after ``since``."""
    query = (
        sa.select(schema.monitor_runs.c.ts, schema.monitor_runs.c.actions)
        .where(schema.monitor_runs.c.monitor == monitor, schema.monitor_runs.c.ts > since)
        .where(schema.monitor_runs.c.workspace == workspace)
        .order_by(schema.monitor_runs.c.id.desc())
    )
    with db.reading(engine) as conn:
        for row in conn.execute(query):
            if any(a.get("rule") == rule for a in json.loads(row.actions)):
                return float(row.ts)
    return None


def record_run(
    engine: Engine,
    *,
    monitor: str,
    model: str,
    version: str | None,
    status: str,
    run_id: str | None,
    actions: list[dict[str, Any]],
    detail: Mapping[str, Any],
    ts: float,
    workspace: str = DEFAULT_WORKSPACE,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            schema.monitor_runs.insert().values(
                workspace=workspace,
                monitor=monitor,
                model=model,
                version=version,
                status=status,
                ts=ts,
                run_id=run_id,
                actions=json.dumps(actions),
                detail=json.dumps(dict(detail), default=str),
            )
        )


def last_verdict(
    engine: Engine, model: str, version: str, workspace: str, statuses: tuple[str, ...]
) -> str | None:
    """The newest status among ``statuses`` that any monitor recorded on ``model`` ``version``
    in ``workspace``, or ``None``."""
    query = (
        sa.select(schema.monitor_runs.c.status)
        .where(schema.monitor_runs.c.model == model, schema.monitor_runs.c.version == version)
        .where(schema.monitor_runs.c.workspace == workspace)
        .where(schema.monitor_runs.c.status.in_(statuses))
        .order_by(schema.monitor_runs.c.id.desc())
        .limit(1)
    )
    with db.reading(engine) as conn:
        return conn.execute(query).scalar()
