"""Governed writes interrupted between MLflow's commit and steward's audit entry.

MLflow's write and steward's audit entry are two transactions (MLflow owns its session). A
process killed between them would leave a change in the registry that the audit log does not
show. So before each write a *pending* row is committed; the transaction that appends the
write's audit entry deletes it. A pending row found later belongs to a writer that stopped: the
next governed write on the same model (under the model's write lock, so no live writer can own
it) checks the registry and appends the missing entry, marked ``recovered``:

- ``applied`` when the registry shows the change (the alias points at the version, the tag has
  the value, the version exists, ...);
- ``failed: interrupted ...`` when it does not;
- ``unknown: interrupted ...`` for an action whose effect cannot be read back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlflow.exceptions import MlflowException
from sqlalchemy.engine import Connection

from mlflow_steward.records import history
from mlflow_steward.records.audit import AuditEntry, AuditLog
from mlflow_steward.records.pending_writes import PendingWrite, delete, owner
from mlflow_steward.registry import alias_holder, not_found, quote_name

NOT_APPLIED = "failed: interrupted; the registry does not show the change (recovered)"
UNKNOWN = "unknown: interrupted; steward cannot read back whether the change was applied"


def _missing(call: Callable[[], Any]) -> bool:
    """True when MLflow answers that the entity does not exist."""
    try:
        call()
    except MlflowException as exc:
        if not_found(exc):
            return True
        raise
    return False


def check(
    store: Any, p: PendingWrite, audited_versions: Callable[[], set[str]]
) -> tuple[bool | None, str | None]:
    """Whether the registry shows ``p``'s change, and the version it concerns.

    ``store`` is MLflow's own registry store; ``audited_versions()`` the versions of ``p.model``
    whose creation is on the audit log (to find a version created by an interrupted write).
    """
    d, model, version = p.details, p.model, p.version
    match p.action:
        case "set_alias":
            return alias_holder(store, model, p.alias or "") == version, version
        case "delete_alias":
            return alias_holder(store, model, p.alias or "") is None, version
        case "set_model_version_tag" | "delete_model_version_tag":
            tags = store.get_model_version(model, version).tags
            if p.action == "set_model_version_tag":
                return tags.get(d.get("tag_key")) == d.get("tag_value"), version
            return d.get("tag_key") not in tags, version
        case "set_registered_model_tag" | "delete_registered_model_tag":
            tags = store.get_registered_model(model).tags
            if p.action == "set_registered_model_tag":
                return tags.get(d.get("tag_key")) == d.get("tag_value"), version
            return d.get("tag_key") not in tags, version
        case "create_registered_model":
            return not _missing(lambda: store.get_registered_model(model)), version
        case "delete_registered_model":
            return _missing(lambda: store.get_registered_model(model)), version
        case "rename_registered_model":
            new_name = d.get("new_name")
            moved = _missing(lambda: store.get_registered_model(model))
            return moved and not _missing(lambda: store.get_registered_model(new_name)), version
        case "delete_model_version":
            return _missing(lambda: store.get_model_version(model, version)), version
        case "transition_stage":
            stage = str(store.get_model_version(model, version).current_stage)
            return stage.lower() == str(d.get("stage", "")).lower(), version
        case "create_model_version":
            if _missing(lambda: store.get_registered_model(model)):
                return False, None
            known = audited_versions()
            found = [
                str(mv.version)
                for mv in store.search_model_versions(f"name='{quote_name(model)}'")
                if mv.source == d.get("source") and str(mv.version) not in known
            ]
            return (True, min(found, key=int)) if found else (False, None)
    return None, version


def complete(
    audit: AuditLog, row: PendingWrite, applied: bool | None, version: str | None
) -> AuditEntry:
    """Append the audit entry of interrupted write ``row`` (and its alias move, if applied) and
    delete the row, in one transaction."""
    outcome = {True: "applied", False: NOT_APPLIED, None: UNKNOWN}[applied]

    def also(conn: Connection, seq: int) -> None:
        delete(conn, row.id)
        if applied and row.action == "rename_registered_model" and row.details.get("new_name"):
            history.rename_model(conn, row.model, str(row.details["new_name"]))
        if applied and row.action == "transition_stage":
            history.insert_move(
                conn,
                model=row.model,
                stage=str(row.details.get("stage")),
                version=row.version,
                previous_version=None,
                kind="stage",
                actor=row.actor,
                audit_seq=seq,
            )
        if applied and row.action in ("set_alias", "delete_alias") and row.alias:
            setting = row.action == "set_alias"
            history.insert_move(
                conn,
                model=row.model,
                alias=row.alias,
                version=row.version if setting else None,
                previous_version=history.last_version(conn, row.model, row.alias),
                kind="rollback"
                if row.details.get("rollback")
                else ("set" if setting else "delete"),
                actor=row.actor,
                audit_seq=seq,
            )

    return audit.append(
        actor=row.actor,
        action=row.action,
        model=row.model,
        version=version,
        alias=row.alias,
        details={
            **row.details,
            "recovered": {"interrupted": row.ts, "writer": row.owner, "by": owner()},
        },
        decision="allowed",
        outcome=outcome,
        reasons=list(row.reasons),
        also=also,
    )
