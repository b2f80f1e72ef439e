"""Where each alias (or legacy stage) pointed over time, as recorded by the governed store."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlflow_steward.plugins.events import DEFAULT_WORKSPACE
from mlflow_steward.records import db, schema
from mlflow_steward.records.audit import utc_now
from mlflow_steward.records.prepared import Prepared


@dataclass(frozen=True)
class HistoryEntry:
    model: str
    alias: str | None
    stage: str | None
    version: str | None
    previous_version: str | None
    kind: str
    actor: str
    ts: str
    audit_seq: int
    workspace: str = DEFAULT_WORKSPACE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_INSERT_MOVE = Prepared(
    schema.alias_history.insert().values(
        {c.name: sa.bindparam(c.name) for c in schema.alias_history.c if c.name != "id"}
    )
)  # every governed alias move runs it


def insert_move(
    conn: Connection,
    *,
    model: str,
    alias: str | None = None,
    stage: str | None = None,
    version: str | None,
    previous_version: str | None,
    kind: str,
    actor: str,
    audit_seq: int,
    workspace: str = DEFAULT_WORKSPACE,
) -> None:
    _INSERT_MOVE.rows(
        conn,
        {
            "model": model,
            "alias": alias,
            "stage": stage,
            "version": version,
            "previous_version": previous_version,
            "kind": kind,
            "actor": actor,
            "ts": utc_now(),
            "audit_seq": audit_seq,
            "workspace": workspace,
        },
    )


def last_version(
    conn: Connection, model: str, alias: str, workspace: str = DEFAULT_WORKSPACE
) -> str | None:
    """The version the newest recorded move of ``alias`` left it on (``None``: none, or deleted)."""
    table = schema.alias_history.c
    return conn.execute(
        sa.select(table.version)
        .where(table.model == model, table.alias == alias, table.workspace == workspace)
        .order_by(schema.alias_history.c.id.desc())
        .limit(1)
    ).scalar()


def rename_model(conn: Connection, old: str, new: str, workspace: str = DEFAULT_WORKSPACE) -> None:
    """Keep history and approvals attached to a renamed registered model (reviews stay bound to
    the model's identity, which a rename keeps)."""
    for table in (schema.alias_history, schema.approvals):
        conn.execute(
            table.update()
            .where(table.c.model == old, table.c.workspace == workspace)
            .values(model=new)
        )


def history(
    engine: Engine, model: str, alias: str | None = None, workspace: str = DEFAULT_WORKSPACE
) -> list[HistoryEntry]:
    query = sa.select(schema.alias_history).where(
        schema.alias_history.c.model == model, schema.alias_history.c.workspace == workspace
    )
    if alias is not None:
        query = query.where(schema.alias_history.c.alias == alias)
    query = query.order_by(schema.alias_history.c.id)
    with db.reading(engine) as conn:
        return [
            HistoryEntry(
                r.model,
                r.alias,
                r.stage,
                r.version,
                r.previous_version,
                r.kind,
                r.actor,
                r.ts,
                r.audit_seq,
                r.workspace,
            )
            for r in conn.execute(query)
        ]


def rollback_target(entries: list[HistoryEntry], current: str | None) -> str | None:
    """The version that held the alias before ``current`` was (last) promoted to it.

    Rollback entries are skipped when looking for that promotion, so rolling back twice walks
    back two promotions instead of flipping between two versions.
    """
    for entry in reversed(entries):
        if entry.kind == "set" and entry.version == current:
            return entry.previous_version
    return None
