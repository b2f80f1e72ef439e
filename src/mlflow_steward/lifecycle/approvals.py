"""Approvals live in steward's own table (never in tags, which anyone with EDIT could write)."""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlflow_steward import db
from mlflow_steward.governance.events import Approval


def list_approvals(engine: Engine, model: str, version: str, alias: str) -> list[Approval]:
    query = (
        sa.select(db.approvals)
        .where(
            db.approvals.c.model == model,
            db.approvals.c.version == str(version),
            db.approvals.c.alias == alias,
        )
        .order_by(db.approvals.c.id)
    )
    with engine.connect() as conn:
        return [
            Approval(r.model, r.version, r.alias, r.approver, r.comment, r.created)
            for r in conn.execute(query)
        ]


def insert_approval(
    conn: Connection,
    *,
    model: str,
    version: str,
    alias: str,
    approver: str,
    comment: str,
    audit_seq: int,
) -> None:
    conn.execute(
        db.approvals.insert().values(
            model=model,
            version=str(version),
            alias=alias,
            approver=approver,
            comment=comment,
            created=time.time(),
            audit_seq=audit_seq,
        )
    )
