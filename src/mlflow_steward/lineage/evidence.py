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


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _fact(read: Any) -> Any:
    """A fact, or ``{"unavailable": why}`` (evidence records what could not be known too)."""
    try:
        return _json_safe(read())
    except Exception as exc:
        return {"unavailable": f"{type(exc).__name__}: {exc}"}


def _baseline(ctx: Any, model_id: str | None) -> Any:
    from mlflow_steward.governance.digest import digest_artifacts
    from mlflow_steward.monitoring.baseline import TAG

    if not model_id:
        return None
    logged = ctx.client.get_logged_model(model_id)
    folder = (logged.tags or {}).get(TAG)
    if not folder:
        return None
    uri = f"{logged.artifact_location.rstrip('/')}/{folder}"
    return {"source": uri, "digest": digest_artifacts(uri, ctx.tracking_uri).digest}


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
        inputs["baseline"] = _fact(lambda: _baseline(ctx, getattr(facts, "model_id", None)))
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
    """Whether the allowed move is in the registry now (its write may have failed)."""
    ctx = getattr(event.facts, "_ctx", None)
    if ctx is None:
        return False
    if event.action == "set_alias":
        from mlflow_steward.registry import alias_holder

        return alias_holder(ctx.registry, event.model, event.alias) == event.version
    mv = ctx.registry.get_model_version(event.model, event.version)
    return str(mv.current_stage).lower() == str(event.stage).lower()


def _on(event: Any, step: Any) -> str:
    if step is not None:
        return f"deployment {step[0].name} ({step[0].operation} on {step[0].target})"
    return f"@{event.alias}" if event.alias else f"stage {event.stage}"


def record(event: Any, decision: Any, step: Any = None) -> dict[str, Any] | None:
    """Write the evidence of ``event`` (artifact, reserved tag, audit entry); on failure record
    the failure on the audit log instead. Returns the index entry written, or ``None``."""
    from mlflow_steward.records.audit import AuditLog

    ctx = getattr(event.facts, "_ctx", None)
    if ctx is None or ctx.db_engine is None:
        return None
    on = _on(event, step)
    audit = AuditLog(ctx.db_engine)
    try:
        entry = _write(ctx, event, document(event, decision, step), on)
    except Exception as exc:
        _logger.warning("steward could not record the evidence of %s: %s", event.target, exc)
        audit.append(
            actor=ACTOR,
            action=AUDIT_ACTION,
            model=event.model,
            version=event.version,
            alias=event.alias,
            details={"on": on, "for": event.action},
            decision="allowed",
            outcome=f"failed: {type(exc).__name__}: {exc}",
            reasons=[],
            workspace=event.workspace,
        )
        return None
    audit.append(
        actor=ACTOR,
        action=AUDIT_ACTION,
        model=event.model,
        version=event.version,
        alias=event.alias,
        details={"for": event.action, **entry},
        decision="allowed",
        outcome="applied",
        reasons=[],
        workspace=event.workspace,
    )
    return entry


def _write(ctx: Any, event: Any, doc: dict[str, Any], on: str) -> dict[str, Any]:
    from mlflow.entities.model_registry import ModelVersionTag

    from mlflow_steward import _mlflow_adapter

    body = json.dumps(doc, indent=2, sort_keys=True).encode()
    digest = hashlib.sha256(body).hexdigest()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    filename = f"{stamp}-{event.action}-{digest[:16]}.json"
    mv = ctx.registry.get_model_version(event.model, event.version)
    if mv.run_id:
        root = ctx.client.get_run(mv.run_id).info.artifact_uri
        where = f"runs:/{mv.run_id}"
    elif getattr(mv, "model_id", None):
        root = ctx.client.get_logged_model(mv.model_id).artifact_location
        where = f"models:/{mv.model_id}"
    else:
        raise RuntimeError(f"{event.target} has neither a source run nor a logged model")
    repo = _mlflow_adapter.artifact_repository(root, ctx.tracking_uri)
    with tempfile.TemporaryDirectory(prefix="steward-evidence-") as tmp:
        local = os.path.join(tmp, filename)
        with open(local, "wb") as out:
            out.write(body)
        repo.log_artifact(local, ARTIFACT_DIR)
    entry = {
        "path": f"{where}/{ARTIFACT_DIR}/{filename}",
        "sha256": f"sha256:{digest}",
        "action": event.action,
        "on": on,
        "time": doc["time"],
    }
    ctx.registry.set_model_version_tag(
        event.model,
        event.version,
        ModelVersionTag(f"{TAG_PREFIX}{digest[:16]}", json.dumps(entry, sort_keys=True)),
    )
    return entry


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
