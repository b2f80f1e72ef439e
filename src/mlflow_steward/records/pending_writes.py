"""Pending writes: a governed write's row committed before MLflow's write and deleted in the
transaction that appends its audit entry. A row left behind names a writer that stopped in
between (``governance/recovery.py`` finds and completes it)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlflow_steward.plugins.events import ActionEvent, Decision
from mlflow_steward.records import db, schema
from mlflow_steward.records.audit import utc_now
from mlflow_steward.records.prepared import Prepared


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class PendingWrite:
    id: int
    ts: str
    actor: str
    action: str
    model: str
    version: str | None
    alias: str | None
    details: Mapping[str, Any]
    reasons: list[Mapping[str, Any]]
    owner: str


def insert(engine: Engine, event: ActionEvent, decision: Decision) -> int:
    """Commit the pending row of a decided write (``event``, allowed by ``decision``) before it
    is made; returns the row's id for :func:`delete`."""
    with engine.begin() as conn:
        result = conn.execute(
            schema.pending_writes.insert().values(
                workspace=event.workspace,
                ts=utc_now(),
                actor=event.actor,
                action=event.action,
                model=event.model,
                version=event.version,
                alias=event.alias,
                details=json.dumps(dict(event.details()), sort_keys=True, default=str),
                reasons=json.dumps([o.to_dict() for o in decision.outcomes], default=str),
                owner=owner(),
            )
        )
        key = result.inserted_primary_key
        assert key is not None  # an INSERT has a primary key
        return int(key[0])


def delete(conn: Connection, pending_id: int) -> None:
    conn.execute(schema.pending_writes.delete().where(schema.pending_writes.c.id == pending_id))


# Built once: every governed write in the audit transaction asks it.
_ANY_PENDING = Prepared(
    sa.select(schema.pending_writes.c.id)
    .where(schema.pending_writes.c.model == sa.bindparam("model"))
    .limit(1)
)


def any_pending(conn: Connection, model: str) -> bool:
    """Whether ``model`` has pending rows (in the caller's transaction)."""
    return bool(_ANY_PENDING.rows(conn, {"model": model}))


def pending(engine: Engine, model: str | None = None) -> list[PendingWrite]:
    """Pending rows, oldest first (of one model, or all)."""
    query = sa.select(schema.pending_writes).order_by(schema.pending_writes.c.id)
    if model is not None:
        query = query.where(schema.pending_writes.c.model == model)
    with db.reading(engine) as conn:
        return [
            PendingWrite(
                id=r.id,
                ts=r.ts,
                actor=r.actor,
                action=r.action,
                model=r.model,
                version=r.version,
                alias=r.alias,
                details=json.loads(r.details),
                reasons=json.loads(r.reasons),
                owner=r.owner,
            )
            for r in conn.execute(query)
        ]
