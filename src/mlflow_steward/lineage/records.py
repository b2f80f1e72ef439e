"""Where lineage reads steward's own records from: the registry database (embedded, a
``steward+<db>`` or database URI) or a governed server's steward endpoints (``http(s)://``).

A server exposes reviews and deployments over REST; its audit log, alias history and monitor
runs live in its database only, so through a server those parts are reported as unavailable
(``None``), never guessed.
"""

from __future__ import annotations

import json
from typing import Any

#: What a record source cannot provide is ``None`` (unavailable), what it has none of is ``[]``.
Rows = list[dict[str, Any]] | None


class LocalRecords:
    """steward's tables in the registry database of a session."""

    where = "registry database"

    def __init__(self, session: Any) -> None:
        self.session = session
        self.engine = session.db_engine
        self.workspace = session.workspace()

    def audit(self, model: str) -> Rows:
        from mlflow_steward.records.audit import AuditLog

        return [e.to_dict() for e in AuditLog(self.engine).entries(model=model)]

    def moves(self, model: str) -> Rows:
        from mlflow_steward.records import history

        return [e.to_dict() for e in history.history(self.engine, model, None, self.workspace)]

    def reviews(self, model: str) -> Rows:
        from mlflow_steward.records import approvals

        found = approvals.list_reviews(self.engine, model=model, workspace=self.workspace)
        return [r.to_dict() for r in found]

    def deployments(self) -> Rows:
        """Every deployment of the workspace with its history (``history``: steps, oldest
        first)."""
        from mlflow_steward.records.deployments import DeploymentStore

        store = DeploymentStore(self.engine, self.workspace)
        return [
            {**d.to_dict(), "history": [s.to_dict() for s in store.history(d.name)]}
            for d in store.list()
        ]

    def deployment(self, name: str) -> dict[str, Any] | None:
        from mlflow_steward.records.deployments import DeploymentStore

        store = DeploymentStore(self.engine, self.workspace)
        info = store.get(name)
        if info is None:
            return None
        return {**info.to_dict(), "history": [s.to_dict() for s in store.history(name)]}

    def deployment_names(self) -> list[str]:
        rows = self.deployments() or []
        return [d["name"] for d in rows]

    def monitor_runs(self, model: str, version: str) -> Rows:
        import sqlalchemy as sa

        from mlflow_steward.records import db, schema

        t = schema.monitor_runs.c
        query = (
            sa.select(schema.monitor_runs)
            .where(t.model == model, t.version == version, t.workspace == self.workspace)
            .order_by(t.id)
        )
        with db.reading(self.engine) as conn:
            return [
                {
                    "monitor": r.monitor,
                    "status": r.status,
                    "ts": r.ts,
                    "run_id": r.run_id,
                    "actions": json.loads(r.actions),
                }
                for r in conn.execute(query)
            ]


class ServerRecords:
    """The steward endpoints of a governed server (reviews and deployments only)."""

    where = "server"

    def __init__(self, server_uri: str) -> None:
        self.server_uri = server_uri

    def _get(self, endpoint: str, params: dict[str, str]) -> dict[str, Any]:
        from mlflow_steward import _mlflow_adapter

        return _mlflow_adapter.server_rest_call(self.server_uri, "GET", endpoint, params)

    def audit(self, model: str) -> Rows:
        return None

    def moves(self, model: str) -> Rows:
        return None

    def monitor_runs(self, model: str, version: str) -> Rows:
        return None

    def reviews(self, model: str) -> Rows:
        return list(self._get("/api/2.0/steward/approvals", {"name": model})["reviews"])

    def deployments(self, model: str | None = None) -> Rows:
        params = {"name": model} if model else {}
        return list(self._get("/api/2.0/steward/deployments", params)["deployments"])

    def deployment(self, name: str) -> dict[str, Any] | None:
        for d in self.deployments() or []:
            if d["name"] == name:
                return d
        return None

    def deployment_names(self) -> list[str]:
        return [d["name"] for d in self.deployments() or []]


def open_sources(registry_uri: str | None, configured: str | None, session: Any) -> tuple[Any, Any]:
    """``(MlflowClient, records)`` for a registry: a governed server's endpoints for an
    ``http(s)://`` URI, else the registry database through ``session()`` (a callable)."""
    from mlflow import MlflowClient

    from mlflow_steward.lifecycle.reviews import is_server_uri
    from mlflow_steward.registry import inner_uri, resolve_registry_uri

    uri = inner_uri(resolve_registry_uri(registry_uri, configured))
    if is_server_uri(uri):
        return MlflowClient(tracking_uri=uri, registry_uri=uri), ServerRecords(uri)
    opened = session()
    return (
        MlflowClient(opened.tracking_uri, inner_uri(opened.registry_uri)),
        LocalRecords(opened),
    )


def resolve_version(client: Any, model_uri: str) -> tuple[str, str]:
    """``(name, version)`` of ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""
    from mlflow.exceptions import MlflowException

    from mlflow_steward.errors import LifecycleError
    from mlflow_steward.registry import canonical_version, parse_model_uri

    ref = parse_model_uri(model_uri)
    if ref.name is None:
        raise LifecycleError(
            f"{model_uri!r} is not a registered version: use models:/NAME/VERSION or "
            "models:/NAME@ALIAS"
        )
    if ref.version:
        return ref.name, canonical_version(ref.version)
    try:
        return ref.name, str(client.get_model_version_by_alias(ref.name, ref.alias).version)
    except MlflowException as exc:
        raise LifecycleError(f"{model_uri}: {exc.message}") from None
