"""Monitor rules: verdicts mapped to actions, with hysteresis (N consecutive runs), cooldown and
dry-run; and the built-in actions (tag, alert, demote, rollback).

Every registry change an action makes goes through the governed store as actor
``steward-monitor``: a policy can refuse it (the refusal is the action's result, and audited),
exactly as it would refuse a person.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.errors import MonitoringError
from mlflow_steward.monitoring import MONITOR_ACTOR, NO_VERDICT, STATUS_TAG
from mlflow_steward.plugins.types import Alert, MonitorAction, Option

_logger = logging.getLogger(__name__)

FLAG_TAG = "steward.monitor.flag"


@dataclass
class ActionContext:
    """What an action sees: the monitor, this run's result, a session, and the alert channels."""

    monitor: Any
    model: str
    version: str | None  # None: the monitored version could not be resolved (status error)
    status: str
    drifted: tuple[str, ...]
    share: float
    run_id: str | None
    session: Any
    dry_run: bool
    alerters: Mapping[str, Any]
    channels: Mapping[str, Any]
    done: list[str] = field(default_factory=list)

    @property
    def alias(self) -> str | None:
        from mlflow_steward.registry import parse_model_uri

        return parse_model_uri(self.monitor.model).alias

    def alert(self) -> Alert:
        target = f"models:/{self.model}/{self.version}" if self.version else self.monitor.model
        summary = (
            f"monitor {self.monitor.name}: {self.status.upper()} on {target}"
            + (f"; drifted columns: {', '.join(self.drifted)}" if self.drifted else "")
            + (f"; actions: {'; '.join(self.done)}" if self.done else "")
        )
        return Alert(
            monitor=self.monitor.name,
            model=self.model,
            version=self.version or "",
            status=self.status,
            drifted=tuple(self.drifted),
            share=self.share,
            actions=tuple(self.done),
            run_id=self.run_id,
            summary=summary,
            time=datetime.now(UTC).isoformat(timespec="seconds"),
        )


def _as_monitor() -> Any:
    """Governed actions inside the block are made by ``steward-monitor``."""
    from mlflow_steward.governance.governor import acting_as

    return acting_as(MONITOR_ACTOR)


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


def _tag(context: ActionContext, params: Any) -> str:
    params = params or {}
    key = params.get("key") or FLAG_TAG
    value = str(params.get("value") or f"{context.status} {context.alert().time}")
    what = f"tag v{context.version} {key}={value}"
    if context.dry_run:
        return f"would {what}"
    if key.startswith("steward."):
        context.session.store.set_steward_tag(
            context.model, context.version, key, value, actor=MONITOR_ACTOR
        )
    else:
        from mlflow.entities.model_registry import ModelVersionTag

        with _as_monitor():
            context.session.store.set_model_version_tag(
                context.model, context.version, ModelVersionTag(key, value)
            )
    return f"tagged v{context.version} {key}={value}"


def _alert(context: ActionContext, params: Any) -> str:
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


def _demote(context: ActionContext, params: Any) -> str:
    alias, moved_on = _held_alias(context, params, "demote")
    if moved_on:
        return f"{moved_on}: nothing to demote"
    if context.dry_run:
        return f"would remove @{alias} from v{context.version}"
    from mlflow_steward.governance.governor import action_context

    with _as_monitor(), action_context(expect_holder=context.version):
        context.session.store.delete_registered_model_alias(context.model, alias)
    return f"removed @{alias} from v{context.version}"


def healthy_previous_holder(session: Any, model: str, alias: str, current: str) -> str | None:
    """The newest earlier holder of ``alias`` that was not rolled back from and whose last
    monitor verdict (status tag, or the monitor runs' record) was not drift or invalid."""
    from mlflow.exceptions import MlflowException

    from mlflow_steward.records import monitor_runs

    entries = session.history(model, alias)
    rolled_back_from = {e.previous_version for e in entries if e.kind == "rollback"}
    seen = {current, *rolled_back_from}
    bad = ("drift", "invalid")
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
                session.governor.db_engine,
                model,
                version,
                session.governor.workspace(),
                ("healthy", *bad),
            )
            if tags.get(STATUS_TAG) not in bad and last_run not in bad:
                return version
    return None


def _rollback(context: ActionContext, params: Any) -> str:
    params = params if isinstance(params, dict) else {}
    alias, moved_on = _held_alias(context, params, "rollback")
    if moved_on:
        return f"{moved_on}: no rollback"
    target = healthy_previous_holder(context.session, context.model, alias, context.version)
    if target is None:
        raise MonitoringError(
            f"no earlier healthy holder of @{alias} on {context.model!r} to roll back to"
        )
    follow = params.get("deployments") is not False
    if context.dry_run:
        return f"would move @{alias} from v{context.version} back to v{target}"
    with _as_monitor():
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
            with _as_monitor():
                done = host.update(info.name, uri)
        except Exception as exc:  # the alias has moved already: say so, with what failed
            moved.append(
                f"{info.name} NOT updated ({type(exc).__name__}: "
                f"{getattr(exc, 'message', None) or exc})"
            )
            continue
        moved.append(f"{info.name} now serves v{done.version}")
    return ("; deployment " + ", ".join(moved)) if moved else ""


def _project_source(tags: Mapping[str, str], run_id: str) -> tuple[str, str, str]:
    """(repository, commit, entry point) recorded on an MLflow project run."""
    commit = tags.get("mlflow.source.git.commit")
    repo = tags.get("mlflow.source.git.repoURL") or tags.get("mlflow.source.name", "")
    if not commit or not repo:
        raise MonitoringError(
            f"run {run_id} was not started from a git project (no mlflow.source.git.commit or "
            "repository tag): retrain it with a steward_retrain plugin instead"
        )
    if not re.fullmatch(r"[0-9a-f]{7,64}", commit):
        raise MonitoringError(f"run {run_id}: {commit!r} is not a git commit id")
    return (
        repo.removeprefix("file://").split("#")[0],
        commit,
        tags.get("mlflow.project.entryPoint", "main"),
    )


def _declared_parameters(project: str, entry_point: str) -> set[str]:
    """The parameters the entry point declares in the project's MLproject file."""
    from pathlib import Path

    import yaml

    for name in ("MLproject", "mlproject"):
        path = Path(project) / name
        if path.is_file():
            spec = yaml.safe_load(path.read_text()) or {}
            entry = (spec.get("entry_points") or {}).get(entry_point) or {}
            return set(entry.get("parameters") or {})
    raise MonitoringError(f"no MLproject file at commit in {project}")


def _retrain(context: ActionContext, params: Any) -> str:
    """Re-run the producing run's MLflow project from its recorded git commit (or let a
    ``steward_retrain`` plugin do it), as a governed ``retrain`` action."""
    import subprocess
    import tempfile

    from mlflow import MlflowClient

    params = params if isinstance(params, dict) else {}
    session = context.session
    mv = session.store.get_model_version(context.model, context.version)
    run = MlflowClient(session.tracking_uri).get_run(mv.run_id)
    planned = f"retrain v{context.version} (run {mv.run_id})"
    plugin_first = session.pm.hooks
    governor = session.governor
    repo = commit = entry_point = None
    try:
        repo, commit, entry_point = _project_source(run.data.tags, mv.run_id)
    except MonitoringError:
        if not session.pm.hook.steward_retrain.get_hookimpls():
            raise
    if context.dry_run:
        return f"would {planned}" + (f" from {repo}@{commit[:10]}" if commit else "")
    from mlflow_steward.governance.facts import RegisteredVersionFacts

    with _as_monitor():
        event = governor.event(
            "retrain",
            context.model,
            version=context.version,
            facts=RegisteredVersionFacts(governor.ctx, context.model, context.version),
            context={
                "run_id": mv.run_id,
                "repo": repo,
                "commit": commit,
                "entry_point": entry_point,
            },
        )

    def start() -> str:
        done = plugin_first.retrain(context=context, params=params)
        if done is not None:
            return str(done)
        import mlflow.projects

        with tempfile.TemporaryDirectory(prefix="steward-retrain-") as clone:
            subprocess.run(
                ["git", "clone", "--quiet", "--", repo, clone],
                check=True,
                capture_output=True,
                text=True,
            )
            subprocess.run(
                ["git", "-C", clone, "checkout", "--quiet", commit],
                check=True,
                capture_output=True,
                text=True,
            )
            declared = _declared_parameters(clone, entry_point)
            submitted = mlflow.projects.run(
                clone,
                entry_point=entry_point,
                parameters={k: v for k, v in run.data.params.items() if k in declared},
                experiment_id=run.info.experiment_id,
                env_manager=params.get("env_manager") or "local",
                synchronous=True,
                run_name=f"retrain-{context.model}-v{context.version}",
            )
            MlflowClient(session.tracking_uri).set_tag(
                submitted.run_id,
                "steward.retrained_from",
                f"models:/{context.model}/{context.version}",
            )
        return (
            f"retrained from {repo}@{commit[:10]} (entry point {entry_point}): run "
            f"{submitted.run_id} {submitted.get_status()}"
        )

    # Decided and audited under the model's lock; trained outside it, so nobody's promotion
    # waits for a training run. The new run is tagged steward.retrained_from.
    governor.governed(event, lambda: None)
    try:
        return start()
    except subprocess.CalledProcessError as exc:
        raise MonitoringError(
            f"cannot check out {repo}@{commit}: {(exc.stderr or '').strip()[:300]}"
        ) from None


@hookimpl
def steward_monitor_actions() -> Iterator[MonitorAction]:
    yield MonitorAction(
        "tag",
        _tag,
        "tag the version (default steward.monitor.flag=<status> <time>)",
        options=(
            Option("key", "str", "the tag's key", FLAG_TAG),
            Option("value", "str", "the tag's value (default: the status and time)", None),
        ),
    )
    yield MonitorAction("alert", _alert, "send the alert to alerters (default: all configured)")
    yield MonitorAction(
        "demote",
        _demote,
        "remove the monitored alias from the version",
        options=(Option("alias", "str", "the alias (default: the monitored one)", None),),
    )
    yield MonitorAction(
        "rollback",
        _rollback,
        "move the alias back to its last earlier holder with a healthy verdict, and update the "
        "deployments that serve the alias ({deployments: false} to leave them)",
        options=(
            Option("alias", "str", "the alias (default: the monitored one)", None),
            Option("deployments", "bool", "update the deployments that follow the alias", True),
        ),
    )
    yield MonitorAction(
        "retrain",
        _retrain,
        "re-run the producing run's MLflow project from its git commit, entry point and "
        "parameters in a temporary clone (or a steward_retrain plugin's way), governed as retrain",
        options=(
            Option(
                "env_manager",
                "str",
                "MLflow's environment manager for the project",
                "local",
                choices=("local", "virtualenv", "uv", "conda"),
            ),
        ),
    )


# -- rule evaluation ---------------------------------------------------------------------------


def apply_rules(
    context: ActionContext, actions: Mapping[str, MonitorAction], now: float
) -> list[dict[str, Any]]:
    """Run the actions of every rule that fires on this run; return what each did.

    A rule fires when this run's status is one of its ``when`` and the ``after - 1`` runs before
    it had such a status too, unless it acted less than ``cooldown`` ago. An action that raises
    (or is refused by a policy) is reported and the next one still runs.
    """
    from mlflow_steward.records import monitor_runs

    engine = context.session.governor.db_engine
    workspace = context.session.governor.workspace()
    done: list[dict[str, Any]] = []
    for rule in context.monitor.rules:
        if context.status not in rule.when:
            continue
        previous = monitor_runs.recent_statuses(
            engine, context.monitor.name, context.version, rule.after - 1, workspace
        )
        if len(previous) < rule.after - 1 or any(s not in rule.when for s in previous):
            done.append(
                {
                    "rule": None,
                    "action": "wait",
                    "ok": True,
                    "result": f"rule {rule.index}: {1 + _streak(previous, rule.when)} of "
                    f"{rule.after} consecutive {'/'.join(rule.when)} runs",
                }
            )
            continue
        fired = (
            monitor_runs.last_fired(
                engine, context.monitor.name, rule.index, now - rule.cooldown, workspace
            )
            if rule.cooldown
            else None
        )
        if fired is not None:
            done.append(
                {
                    "rule": None,
                    "action": "cooldown",
                    "ok": True,
                    "result": f"rule {rule.index}: cooling down until "
                    + datetime.fromtimestamp(fired + rule.cooldown, UTC).isoformat(
                        timespec="seconds"
                    ),
                }
            )
            continue
        for call in rule.actions:
            if context.status in NO_VERDICT and call.name != "alert":
                continue  # refused when the configuration is read; kept as a second guard
            try:
                result = actions[call.name].run(context, call.params)
                ok = True
            except Exception as exc:
                result = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
                ok = False
                _logger.warning(
                    "monitor %s: action %s failed: %s", context.monitor.name, call.name, result
                )
            context.done.append(f"{call.name}: {result}")
            done.append({"rule": rule.index, "action": call.name, "ok": ok, "result": result})
    return done


def _streak(statuses: list[str], when: tuple[str, ...]) -> int:
    n = 0
    for status in statuses:
        if status not in when:
            break
        n += 1
    return n


def now() -> float:
    return time.time()
