"""Review entries (requests, approvals, rejections) live in steward's own table, never in tags,
which anyone with EDIT permission could write.

Each entry is bound to what was reviewed: the workspace, the registered model's identity (its
creation time in MLflow), the version, the alias, the action (promotion or demotion, ...) and the
version's content digest when reviewed. The ``approvals`` policy counts an entry only when every
one of them still holds.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlflow_steward.plugins.events import DEFAULT_WORKSPACE, Approval
from mlflow_steward.records import db, schema


def _select(query: Any, engine: Engine) -> list[Approval]:
    with db.reading(engine) as conn:
        return [
            Approval(
                r.model,
                r.version,
                r.alias,
                r.approver,
                r.comment,
                r.created,
                r.verdict,
                action=r.action,
                model_created=r.model_created,
                digest=r.digest,
                workspace=r.workspace,
            )
            for r in conn.execute(query.order_by(schema.approvals.c.id))
        ]


def list_approvals(
    engine: Engine,
    model: str,
    version: str,
    alias: str,
    *,
    action: str = "set_alias",
    workspace: str = DEFAULT_WORKSPACE,
) -> list[Approval]:
    """Review entries of one action on one version for one alias, oldest first."""
    table = schema.approvals.c
    return _select(
        sa.select(schema.approvals).where(
            table.workspace == workspace,
            table.model == model,
            table.version == str(version),
            table.alias == alias,
            table.action == action,
        ),
        engine,
    )


def list_reviews(
    engine: Engine,
    model: str | None = None,
    since: float | None = None,
    *,
    workspace: str | None = DEFAULT_WORKSPACE,
) -> list[Approval]:
    """Every review entry of a workspace (``None``: all), optionally of one model and no older
    than ``since``, oldest first."""
    query = sa.select(schema.approvals)
    if workspace is not None:
        query = query.where(schema.approvals.c.workspace == workspace)
    if model is not None:
        query = query.where(schema.approvals.c.model == model)
    if since is not None:
        query = query.where(schema.approvals.c.created >= since)
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
    action: str = "set_alias",
    model_created: int | None = None,
    digest: str | None = None,
    workspace: str = DEFAULT_WORKSPACE,
) -> None:
    conn.execute(
        schema.approvals.insert().values(
            model=model,
            version=str(version),
            alias=alias,
            approver=approver,
            verdict=verdict,
            comment=comment,
            created=time.time(),
            audit_seq=audit_seq,
            action=action,
            model_created=model_created,
            digest=digest,
            workspace=workspace,
        )
    )
