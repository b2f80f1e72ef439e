"""Deployment state in the registry database: one row per deployment, one event per step.

Every step that changes what a deployment serves is written together with its audit entry, in one
transaction, so the deployment history and the audit chain never disagree. This module imports no
MLflow: the on-prem gateway process uses it too.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlflow_steward.errors import DeploymentError
from mlflow_steward.plugins.events import DEFAULT_WORKSPACE
from mlflow_steward.plugins.targets import DeploymentInfo
from mlflow_steward.records import db, schema
from mlflow_steward.records.audit import AuditLog, utc_now

#: ``decision`` of audit entries for steps steward takes by itself (automatic rollback, restore).
AUTOMATIC = "automatic"


@dataclass(frozen=True)
class DeploymentStep:
    """One entry of a deployment's history."""

    id: int
    deployment: str
    ts: str
    kind: str
    model: str
    version: str | None
    from_version: str | None
    status: str
    reason: str | None
    actor: str
    audit_seq: int
    workspace: str = DEFAULT_WORKSPACE

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _row_to_info(row: Any) -> DeploymentInfo:
    return DeploymentInfo(
        name=row.name,
        target=row.target,
        kind=row.kind,
        model=row.model,
        version=row.version,
        status=row.status,
        endpoint=row.endpoint,
        requested=row.requested,
        reason=row.reason,
        options=json.loads(row.options),
        traffic=json.loads(row.traffic),
        runtime=json.loads(row.runtime),
        created=row.created,
        updated=row.updated,
        workspace=row.workspace,
    )


class DeploymentStore:
    """Reads and writes deployment rows; every state change is audited."""

    def __init__(self, engine: Engine, workspace: str | None = None) -> None:
        """``workspace``: the MLflow workspace new deployments belong to and :meth:`list` shows
        (``None``: the default workspace for new ones, every workspace listed). Steps of an
        existing deployment are recorded in its own workspace."""
        self.engine = engine
        self.audit = AuditLog(engine)
        self.workspace = workspace

    @classmethod
    def for_registry(cls, registry_uri: str) -> DeploymentStore:
        return cls(db.get_engine(registry_uri))

    # -- reading -------------------------------------------------------------------------------

    def get(self, name: str) -> DeploymentInfo | None:
        with db.reading(self.engine) as conn:
            row = conn.execute(
                sa.select(schema.deployments).where(schema.deployments.c.name == name)
            ).first()
        return _row_to_info(row) if row is not None else None

    def require(self, name: str) -> DeploymentInfo:
        info = self.get(name)
        if info is None:
            known = [d.name for d in self.list()]
            raise DeploymentError(
                f"no deployment named {name!r}"
                + (f"; deployments: {', '.join(known)}" if known else "; there are none yet")
            )
        return info

    def list(self, target: str | None = None) -> list[DeploymentInfo]:
        query = sa.select(schema.deployments).order_by(schema.deployments.c.name)
        if target is not None:
            query = query.where(schema.deployments.c.target == target)
        if self.workspace is not None:
            query = query.where(schema.deployments.c.workspace == self.workspace)
        with db.reading(self.engine) as conn:
            return [_row_to_info(row) for row in conn.execute(query)]

    # `builtins.list`: in this class body `list` is the method above.
    def history(self, name: str, *, since_create: bool = False) -> builtins.list[DeploymentStep]:
        """Every step of deployments named ``name``, oldest first; ``since_create``: only those
        of the current deployment (a name can be deleted and created again)."""
        t = schema.deployment_events
        with db.reading(self.engine) as conn:
            rows = conn.execute(sa.select(t).where(t.c.deployment == name).order_by(t.c.id))
            steps = [DeploymentStep(**row._mapping) for row in rows]
        if since_create:
            starts = [i for i, s in enumerate(steps) if s.kind in ("create", "create-failed")]
            steps = steps[starts[-1] :] if starts else steps
        return steps

    def previous_version(self, name: str, current: str) -> str | None:
        """The version this deployment served before ``current`` (for a rollback); never one
        the gateway took out automatically."""
        steps = self.history(name, since_create=True)
        failed = {s.from_version for s in steps if s.kind == "auto-rollback"}
        served = [s.version for s in steps if s.status == "serving" and s.version]
        for version in reversed(served):
            if version != current and version not in failed:
                return version
        return None

    # -- writing -------------------------------------------------------------------------------

    def insert_row(self, conn: Connection, info: DeploymentInfo) -> None:
        now = utc_now()
        exists = conn.execute(
            sa.select(schema.deployments.c.name).where(schema.deployments.c.name == info.name)
        ).first()
        if exists is not None:
            raise DeploymentError(
                f"deployment {info.name!r} already exists; use `update` to change it"
            )
        conn.execute(
            schema.deployments.insert().values(
                name=info.name,
                target=info.target,
                kind=info.kind,
                model=info.model,
                version=info.version,
                requested=info.requested,
                status=info.status,
                endpoint=info.endpoint,
                reason=info.reason,
                options=json.dumps(info.options, sort_keys=True),
                traffic=json.dumps(info.traffic, sort_keys=True),
                runtime=json.dumps(info.runtime, sort_keys=True),
                created=now,
                updated=now,
                workspace=info.workspace,
            )
        )

    def update_row(self, conn: Connection | None, name: str, **values: Any) -> None:
        """Change some columns of a deployment's row (``options``/``traffic``/``runtime`` as
        Python values)."""
        for key in ("options", "traffic", "runtime"):
            if key in values:
                values[key] = json.dumps(values[key], sort_keys=True)
        values["updated"] = utc_now()
        statement = (
            schema.deployments.update().where(schema.deployments.c.name == name).values(**values)
        )
        if conn is not None:
            conn.execute(statement)
        else:
            with self.engine.begin() as own:
                own.execute(statement)

    def set_runtime(self, name: str, runtime: Mapping[str, Any]) -> None:
        self.update_row(None, name, runtime=dict(runtime))

    def delete_row(self, conn: Connection, name: str) -> None:
        conn.execute(schema.deployments.delete().where(schema.deployments.c.name == name))

    def insert_step(
        self,
        conn: Connection,
        *,
        seq: int,
        deployment: str,
        kind: str,
        model: str,
        version: str | None,
        from_version: str | None,
        status: str,
        reason: str | None,
        actor: str,
        workspace: str = DEFAULT_WORKSPACE,
    ) -> None:
        conn.execute(
            schema.deployment_events.insert().values(
                workspace=workspace,
                deployment=deployment,
                ts=utc_now(),
                kind=kind,
                model=model,
                version=version,
                from_version=from_version,
                status=status,
                reason=reason,
                actor=actor,
                audit_seq=seq,
            )
        )

    def record(
        self,
        info: DeploymentInfo,
        *,
        kind: str,
        actor: str,
        status: str,
        version: str | None = None,
        from_version: str | None = None,
        reason: str | None = None,
        decision: str = AUTOMATIC,
        row: Mapping[str, Any] | None = None,
        delete: bool = False,
    ) -> None:
        """Append an audited step to the deployment's history, and change its row (``row``) or
        delete it, all in one transaction."""
        version = version if version is not None else info.version

        def also(conn: Connection, seq: int) -> None:
            self.insert_step(
                conn,
                seq=seq,
                deployment=info.name,
                kind=kind,
                model=info.model,
                version=version,
                from_version=from_version,
                status=status,
                reason=reason,
                actor=actor,
                workspace=info.workspace,
            )
            if delete:
                self.delete_row(conn, info.name)
            elif row:
                self.update_row(conn, info.name, **dict(row))

        self.audit.append(
            actor=actor,
            action=f"deployment_{kind.replace('-', '_')}",
            model=info.model,
            version=version,
            alias=None,
            details={
                "deployment": info.name,
                "target": info.target,
                "status": status,
                **({"from_version": from_version} if from_version else {}),
                **({"reason": reason} if reason else {}),
            },
            decision=decision,
            outcome=status if not reason else f"{status}: {reason}",
            reasons=[],
            also=also,
            workspace=info.workspace,
        )
