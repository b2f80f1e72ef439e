"""The built-in actions of monitor rules: tag the version, alert, demote (remove the monitored
alias), roll the alias back to an earlier healthy holder (and the deployments that serve it).

Every registry change an action makes goes through the governed store as actor
``steward-monitor``: a policy can refuse it (the refusal is the action's result, and audited),
exactly as it would refuse a person.
"""

from __future__ import annotations

from typing import Any

from mlflow_steward.errors import MonitoringError
from mlflow_steward.monitoring import MONITOR_ACTOR, STATUS_TAG
from mlflow_steward.plugins.services import StewardServices
from mlflow_steward.plugins.types import ActionContext

FLAG_TAG = "steward.monitor.flag"


def as_monitor() -> Any:
    """Governed actions inside the block are made by ``steward-monitor``: every rule action,
    built-in or a plugin's, runs inside it (``rules.apply_rules``)."""
    from mlflow_steward.governance.governor import acting_as

    return acting_as(MONITOR_ACTOR)


def monitored_version(context: ActionContext, action: str) -> str:
    """The monitored version. It is unknown only on status ``error``, whose rules may only alert
    (the configuration refuses any other action there)."""
    if context.version is None:
        raise MonitoringError(f"{action}: the monitored version is not known")
    return context.version


def _held_alias(context: ActionContext, params: Any, action: str) -> tuple[str, str | None]:
    """The alias ``action`` moves (``params['alias']`` or the monitored one) and a reason to do
    nothing when the monitored version does not hold it any more."""
    alias = (params or {}).get("alias") if isinstance(params, dict) else None
    alias = alias or context.alias
    if not alias:
        raise MonitoringError(
            f"{action} needs an alias: monitor models:/NAME@ALIAS or give {{alias:}}"
        )
    holder = context.session.store.holder_of(context.model, alias)
    if holder != context.version:
        return alias, f"@{alias} is held by {holder or 'nobody'}, not v{context.version}"
    return alias, None


def tag(context: ActionContext, params: Any) -> str:
    params = params or {}
    key = params.get("key") or FLAG_TAG
    value = str(params.get("value") or f"{context.status} {context.alert().time}")
    what = f"tag v{context.version} {key}={value}"
    if context.dry_run:
        return f"would {what}"
    version = monitored_version(context, "tag")
    if key.startswith("steward."):
        context.session.store.set_steward_tag(
            context.model, version, key, value, actor=MONITOR_ACTOR
        )
    else:
        from mlflow.entities.model_registry import ModelVersionTag

        context.session.store.set_model_version_tag(
            context.model, version, ModelVersionTag(key, value)
        )
    return f"tagged v{context.version} {key}={value}"


def alert(context: ActionContext, params: Any) -> str:
    from mlflow_steward.monitoring.alerting import deliver
    from mlflow_steward.monitoring.monitors import alert_targets

    targets = alert_targets(params, context.alerters)
    if context.dry_run:
        return f"would alert {', '.join(targets)}"
    results = deliver(context.alert(), targets, context.alerters, context.channels)
    parts = [
        f"{r.alerter} ok" if r.ok else f"{r.alerter} FAILED after {r.attempts} tries ({r.error})"
        for r in results
    ]
    return "alerted " + ", ".join(parts)


def demote(context: ActionContext, params: Any) -> str:
    alias, moved_on = _held_alias(context, params, "demote")
    if moved_on:
        return f"{moved_on}: nothing to demote"
    if context.dry_run:
        return f"would remove @{alias} from v{context.version}"
    from mlflow_steward.governance.governor import action_context

    with action_context(expect_holder=context.version):
        context.session.store.delete_registered_model_alias(context.model, alias)
    return f"removed @{alias} from v{context.version}"


def healthy_previous_holder(
    session: StewardServices, model: str, alias: str, current: str
) -> str | None:
    """The newest earlier holder of ``alias`` that was not rolled back from and whose last
    monitor verdict (status tag, or the monitor runs' record) was not drift, degraded or invalid."""
    from mlflow.exceptions import MlflowException

    from mlflow_steward.records import monitor_runs

    entries = session.history(model, alias)
    rolled_back_from = {e.previous_version for e in entries if e.kind == "rollback"}
    seen = {current, *rolled_back_from}
    bad = ("drift", "degraded", "invalid")
    for entry in reversed(entries):
        for version in (entry.previous_version, entry.version):
            if version is None or version in seen:
                continue
            seen.add(version)
            try:
                tags = session.store.get_model_version(model, version).tags
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    continue  # deleted since
                raise
            last_run = monitor_runs.last_verdict(
                session.db_engine,
                model,
                version,
                session.workspace(),
                ("healthy", *bad),
            )
            if tags.get(STATUS_TAG) not in bad and last_run not in bad:
                return version
    return None


def rollback(context: ActionContext, params: Any) -> str:
    params = params if isinstance(params, dict) else {}
    alias, moved_on = _held_alias(context, params, "rollback")
    if moved_on:
        return f"{moved_on}: no rollback"
    target = healthy_previous_holder(
        context.session, context.model, alias, monitored_version(context, "rollback")
    )
    if target is None:
        raise MonitoringError(
            f"no earlier healthy holder of @{alias} on {context.model!r} to roll back to"
        )
    follow = params.get("deployments") is not False
    if context.dry_run:
        return f"would move @{alias} from v{context.version} back to v{target}"
    context.session.rollback(
        context.model, alias, to_version=target, expect_current=context.version
    )
    out = f"moved @{alias} from v{context.version} back to v{target}"
    if follow:
        out += _follow_deployments(context, alias)
    return out


def _follow_deployments(context: ActionContext, alias: str) -> str:
    """Update the deployments that serve ``models:/MODEL@ALIAS`` to the alias's new holder."""
    from mlflow_steward.deployment.host import DeploymentHost

    uri = f"models:/{context.model}@{alias}"
    host = DeploymentHost(context.session)
    moved = []
    for info in host.store.list(None):
        if info.requested != uri:
            continue
        try:
            done = host.update(info.name, uri)
        except Exception as exc:  # the alias has moved already: say so, with what failed
            moved.append(
                f"{info.name} NOT updated ({type(exc).__name__}: "
                f"{getattr(exc, 'message', None) or exc})"
            )
            continue
        moved.append(f"{info.name} now serves v{done.version}")
    return ("; deployment " + ", ".join(moved)) if moved else ""
