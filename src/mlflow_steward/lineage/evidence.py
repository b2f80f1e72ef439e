"""Built-in plugin ``builtin.evidence``: what each governed promotion and deploy rested on.

After a promotion (``set_alias``, ``transition_stage``) is applied, and after a deployment step
(``create``, ``update``, ``rollback``, ``promote_canary``) completed, steward writes one JSON
document: each policy's verdict, reason and configured options (metrics and thresholds, approval
counts, ...), and the inputs it decided on (run and evaluation metrics, approvals, content digest
now and at registration, requirements, baseline digest). So a later reader sees why the move was
allowed even after the policies changed.

Where it lives:

- the artifact ``steward/evidence/<time>-<action>-<hash>.json`` of the version's source run
  (or of its logged model when it has no run), written through MLflow's artifact repository (in
  the server: its own artifact destination, as with proxied artifacts);
- its sha256 in the reserved version tag ``steward.evidence.<first 16 hex digits>``
  (``{"path", "sha256", "action", "on", "time"}``), written by steward itself;
- an audit entry ``record_evidence`` (actor ``steward-evidence``) with the same path and digest,
  on the hash-chained log.

What if writing fails: the governed action has already happened and stays done (an observer
never changes a decision, and never turns an allowed action into an error). The failure is
logged and recorded as a ``record_evidence`` audit entry with outcome ``failed: ...``, so the
missing evidence is visible on the log and in ``steward lineage``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from mlflow_steward import hookimpl

_logger = logging.getLogger(__name__)

#: Prefix of the reserved version tags holding evidence digests.
TAG_PREFIX = "steward.evidence."
#: Where, under the source run's artifacts, evidence documents are written.
ARTIFACT_DIR = "steward/evidence"
#: The audit entries of evidence writes.
AUDIT_ACTION = "record_evidence"
ACTOR = "steward-evidence"
SCHEMA = "steward.evidence/1"

#: Governed actions whose evidence is written once the decision is applied.
PROMOTIONS = ("set_alias", "transition_stage")
#: Deployment steps that are decided (``delete`` is not).
DEPLOY_STEPS = ("create", "update", "rollback", "promote_canary")

#: Deploy decisions waiting for their step to complete, per thread (the decision is made and
#: audited before the target acts; the evidence is written only if the step completes).
_waiting = threading.local()


def evidence_index(tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """The evidence recorded on a version, from its tags, oldest first."""
    out = []
    for key, value in tags.items():
        if not key.startswith(TAG_PREFIX):
            continue
        try:
            item = json.loads(value)
        except ValueError:
            item = {"path": None, "sha256": None, "unreadable": value}
        if not isinstance(item, dict):
            item = {"path": None, "sha256": None, "unreadable": value}
        out.append({"tag": key, **item})
    return sorted(out, key=lambda e: (str(e.get("time") or ""), e["tag"]))


def read_evidence(client: Any, entry: Mapping[str, Any]) -> dict[str, Any]:
    """One index entry checked against its artifact: ``{..entry, actual, ok, problem,
    document}`` (``document``: the parsed JSON when it could be read)."""
    import mlflow.artifacts

    out: dict[str, Any] = {**entry, "actual": None, "ok": False, "problem": None, "document": None}
    path = entry.get("path")
    if not path or not entry.get("sha256"):
        out["problem"] = f"the tag {entry['tag']} is not a readable evidence entry"
        return out
    try:
        with tempfile.TemporaryDirectory(prefix="steward-evidence-") as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=path, dst_path=tmp, tracking_uri=client.tracking_uri
            )
            with open(local, "rb") as handle:
                body = handle.read()
    except Exception as exc:
        out["problem"] = f"cannot read {path}: {type(exc).__name__}: {exc}"
        return out
    out["actual"] = f"sha256:{hashlib.sha256(body).hexdigest()}"
    out["ok"] = out["actual"] == entry["sha256"]
    if not out["ok"]:
        out["problem"] = (
            f"{path} was changed: its sha256 is {out['actual']}, the tag {entry['tag']} "
            f"recorded {entry['sha256']}"
        )
    try:
        out["document"] = json.loads(body)
    except ValueError:
        out["document"] = None
    return out


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _fact(read: Any) -> Any:
    """A fact, or ``{"unavailable": why}`` (evidence records what could not be known too)."""
    try:
        return _json_safe(read())
    except Exception as exc:
        return {"unavailable": f"{type(exc).__name__}: {exc}"}


def _baseline(ctx: Any, facts: Any) -> Any:
    """The digest of the monitoring baseline (``steward.log_baseline``) as registered: its files
    are among the logged model's, so their hashes are in the manifest recorded with the content
    digest (no download)."""
    from mlflow_steward.governance.digest import digest_of_files
    from mlflow_steward.monitoring.baseline import ARTIFACT_DIR as BASELINE_DIR

    recorded = facts.recorded_digest
    files = ctx.manifest(recorded) if recorded else None
    if files is None:
        return None
    baseline = {k: v for k, v in files.items() if k.startswith(f"{BASELINE_DIR}/")}
    if not baseline:
        return None
    return {"files": sorted(baseline), "digest": digest_of_files(baseline)}


def document(event: Any, decision: Any, step: Any = None) -> dict[str, Any]:
    """The evidence of an allowed ``decision`` on ``event`` (``step``: the completed deployment
    step, for a deploy)."""
    facts = event.facts
    ctx = getattr(facts, "_ctx", None)
    review_action = "deploy" if event.action == "deploy" else event.action
    inputs: dict[str, Any] = {
        "content_digest": _fact(lambda: facts.content_digest),
        "recorded_digest": _fact(lambda: facts.recorded_digest),
        "changed_files": _fact(facts.changed_files),
        "run_metrics": _fact(lambda: dict(facts.run_metrics)),
        "evaluation_metrics": _fact(lambda: dict(facts.evaluation_metrics)),
        "requirements": _fact(lambda: list(facts.requirements)),
        "has_signature": _fact(lambda: facts.signature is not None),
        "has_input_example": _fact(lambda: facts.has_input_example),
        "registrant": _fact(lambda: facts.registrant),
        "author": _fact(lambda: facts.author),
    }
    if event.alias:
        inputs["approvals"] = _fact(
            lambda: [a.to_dict() for a in facts.approvals(event.alias, review_action)]
        )
    if ctx is not None:
        inputs["baseline"] = _fact(lambda: _baseline(ctx, facts))
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "action": event.action,
        "model": event.model,
        "version": event.version,
        "alias": event.alias,
        "stage": event.stage,
        "actor": event.actor,
        "time": event.time.isoformat(),
        "workspace": event.workspace,
        "context": _json_safe(dict(event.context)),
        "decision": {
            "allowed": decision.allowed,
            "policies": [
                {**o.to_dict(), "options": _json_safe(dict(getattr(o, "options", {}) or {}))}
                for o in decision.outcomes
            ],
        },
        "inputs": inputs,
    }
    if step is not None:
        out["deployment"] = {
            "name": step[0].name,
            "operation": step[0].operation,
            "target": step[0].target,
            "kind": step[0].kind,
            "status": step[1].status,
            "endpoint": step[1].endpoint,
            "traffic": _json_safe(step[1].traffic),
        }
    return out


def _applied(event: Any) -> bool:
    """Whether the allowed move is in the registry now (its write may have failed). An alias
    move is read from steward's alias history, written in the move's own transaction."""
    ctx = getattr(event.facts, "_ctx", None)
    if ctx is None or ctx.db_engine is None:
        return False
    if event.action == "set_alias":
        import sqlalchemy as sa

        from mlflow_steward.records import db, schema
        from mlflow_steward.records.audit import utc_stamp

        # A move of the alias to this version by this actor recorded after the decision (not
        # "the alias holds it now": under concurrent writers a later move may already follow).
        table = schema.alias_history.c
        since = utc_stamp(event.time)
        with db.reading(ctx.db_engine) as conn:
            found = conn.execute(
                sa.select(table.id)
                .where(
                    table.model == event.model,
                    table.alias == event.alias,
                    table.version == event.version,
                    table.actor == event.actor,
                    table.workspace == event.workspace,
                    table.ts >= since,
                )
                .limit(1)
            ).scalar()
        return found is not None
    mv = ctx.registry.get_model_version(event.model, event.version)
    return str(mv.current_stage).lower() == str(event.stage).lower()


def _on(event: Any, step: Any) -> str:
    if step is not None:
        return f"deployment {step[0].name} ({step[0].operation} on {step[0].target})"
    return f"@{event.alias}" if event.alias else f"stage {event.stage}"


def record(event: Any, decision: Any, step: Any = None) -> dict[str, Any] | None:
    """Write the evidence of ``event`` (artifact, then reserved tag and audit entry in one
    transaction); on failure record the failure on the audit log instead. Returns the index
    entry written, or ``None``."""
    ctx = getattr(event.facts, "_ctx", None)
    if ctx is None or ctx.db_engine is None:
        return None
    on = _on(event, step)
    try:
        entry = _write_artifact(ctx, event, document(event, decision, step), on)
        _record_tag(ctx, event, entry)
    except Exception as exc:
        _logger.warning("steward could not record the evidence of %s: %s", event.target, exc)
        _audit(ctx, event, {"on": on, "for": event.action}, f"failed: {type(exc).__name__}: {exc}")
        return None
    return entry


def _audit(
    ctx: Any, event: Any, details: Mapping[str, Any], outcome: str, conn: Any = None
) -> None:
    from mlflow_steward.records.audit import AuditLog

    AuditLog(ctx.db_engine).append(
        actor=ACTOR,
        action=AUDIT_ACTION,
        model=event.model,
        version=event.version,
        alias=event.alias,
        details=details,
        decision="allowed",
        outcome=outcome,
        reasons=[],
        conn=conn,
        workspace=event.workspace,
    )


def _record_tag(ctx: Any, event: Any, entry: dict[str, Any]) -> None:
    """The reserved tag and its audit entry: in one transaction of steward's own connection when
    the registry is MLflow's SQL store in the same database (MLflow's connection pool is not
    touched), else the tag through the store and then the entry."""
    from mlflow.entities.model_registry import ModelVersionTag

    from mlflow_steward import _mlflow_adapter
    from mlflow_steward.records import locks

    key = f"{TAG_PREFIX}{entry['sha256'].removeprefix('sha256:')[:16]}"
    value = json.dumps(entry, sort_keys=True)
    details = {"for": event.action, "tag": key, **entry}
    if ctx.direct:
        with locks.transaction_lock(ctx.db_engine), ctx.db_engine.begin() as conn:
            _mlflow_adapter.insert_version_tag(
                ctx.registry, conn, event.model, event.version, key, value
            )
            _audit(ctx, event, details, "applied", conn)
        return
    ctx.registry.set_model_version_tag(event.model, event.version, ModelVersionTag(key, value))
    _audit(ctx, event, details, "applied")


def _write_artifact(ctx: Any, event: Any, doc: dict[str, Any], on: str) -> dict[str, Any]:
    """The evidence document as an artifact of the version's source run (else of its logged
    model); returns its index entry."""
    from mlflow_steward import _mlflow_adapter

    body = json.dumps(doc, indent=2, sort_keys=True).encode()
    digest = hashlib.sha256(body).hexdigest()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    filename = f"{stamp}-{event.action}-{digest[:16]}.json"
    facts = event.facts
    run_id, model_id = getattr(facts, "run_id", None), getattr(facts, "model_id", None)
    if run_id:
        root = facts.run_artifact_uri
        where = f"runs:/{run_id}"
    elif model_id:
        root = ctx.client.get_logged_model(model_id).artifact_location
        where = f"models:/{model_id}"
    else:
        raise RuntimeError(f"{event.target} has neither a source run nor a logged model")
    repo = _mlflow_adapter.artifact_repository(root, ctx.tracking_uri)
    with tempfile.TemporaryDirectory(prefix="steward-evidence-") as tmp:
        local = os.path.join(tmp, filename)
        with open(local, "wb") as out:
            out.write(body)
        repo.log_artifact(local, ARTIFACT_DIR)
    return {
        "path": f"{where}/{ARTIFACT_DIR}/{filename}",
        "sha256": f"sha256:{digest}",
        "action": event.action,
        "on": on,
        "time": doc["time"],
    }


@hookimpl
def steward_after_decision(event: Any, decision: Any) -> None:
    if not decision.allowed or event.version is None or event.facts is None:
        return
    if event.action == "deploy":
        if event.context.get("operation") in DEPLOY_STEPS:
            key = (event.workspace, event.model, event.version, event.context.get("deployment"))
            waiting = getattr(_waiting, "decisions", None)
            if waiting is None:
                waiting = _waiting.decisions = {}
            waiting[key] = (event, decision)
        return
    if event.action in PROMOTIONS and _applied(event):
        record(event, decision)


@hookimpl
def steward_after_deploy(event: Any, deployment: Any) -> None:
    if event.model is None or event.operation not in DEPLOY_STEPS:
        return
    waiting = getattr(_waiting, "decisions", None) or {}
    for key in [k for k in waiting if k[1:] == (event.model.name, event.model.version, event.name)]:
        decided, decision = waiting.pop(key)
        record(decided, decision, (event, deployment))
