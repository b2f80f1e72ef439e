"""Review entries (requests, approvals, rejections) live in steward's own table, never in tags,
which anyone with EDIT permission could write."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlflow_steward import db
from mlflow_steward.governance.events import Approval


def _select(query: Any, engine: Engine) -> list[Approval]:
    with db.reading(engine) as conn:
        return [
            Approval(r.model, r.version, r.alias, r.approver, r.comment, r.created, r.verdict)
            for r in conn.execute(query.order_by(db.approvals.c.id))
        ]


def list_approvals(engine: Engine, model: str, version: str, alias: str) -> list[Approval]:
    """Review entries of one version for one alias, oldest first."""
    table = db.approvals.c
    return _select(
        sa.select(db.approvals).where(
            table.model == model, table.version == str(version), table.alias == alias
        ),
        engine,
    )


def list_reviews(
    engine: Engine, model: str | None = None, since: float | None = None
) -> list[Approval]:
    """Every review entry, optionally of one model and no older than ``since``, oldest first."""
    query = sa.select(db.approvals)
    if model is not None:
        query = query.where(db.approvals.c.model == model)
    if since is not None:
        query = query.where(db.approvals.c.created >= since)
    return _select(query, engine)


def insert_approval(
    conn: Connection,
    *,
    model: str,
    version: str,
    alias: str,
    approver: str,
    comment: str,
    audit_seq: int,
    verdict: str = "approve",
) -> None:
    conn.execute(
        db.approvals.insert().values(
            model=model,
            version=str(version),
            alias=alias,
            approver=approver,
            verdict=verdict,
            comment=comment,
            created=time.time(),
            audit_seq=audit_seq,
        )
    )
