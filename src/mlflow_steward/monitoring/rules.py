"""Monitor rules: verdicts mapped to actions, with hysteresis (N consecutive runs), cooldown and
dry-run; and the registration of the built-in actions (``monitoring/actions.py``,
``monitoring/retrain.py``) as the ``builtin.monitor_actions`` plugin.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.monitoring import NO_VERDICT, RECOVERED, UNHEALTHY, actions
from mlflow_steward.monitoring.actions import as_monitor
from mlflow_steward.monitoring.retrain import retrain
from mlflow_steward.plugins.types import ActionContext, MonitorAction, Option

_logger = logging.getLogger(__name__)


@hookimpl
def steward_monitor_actions() -> Iterator[MonitorAction]:
    yield MonitorAction(
        "tag",
        actions.tag,
        "tag the version (default steward.monitor.flag=<status> <time>)",
        options=(
            Option("key", "str", "the tag's key", actions.FLAG_TAG),
            Option("value", "str", "the tag's value (default: the status and time)", None),
        ),
    )
    yield MonitorAction(
        "alert", actions.alert, "send the alert to alerters (default: all configured)"
    )
    yield MonitorAction(
        "demote",
        actions.demote,
        "remove the monitored alias from the version",
        options=(Option("alias", "str", "the alias (default: the monitored one)", None),),
    )
    yield MonitorAction(
        "rollback",
        actions.rollback,
        "move the alias back to its last earlier holder with a healthy verdict, and update the "
        "deployments that serve the alias ({deployments: false} to leave them)",
        options=(
            Option("alias", "str", "the alias (default: the monitored one)", None),
            Option("deployments", "bool", "update the deployments that follow the alias", True),
        ),
    )
    yield MonitorAction(
        "retrain",
        retrain,
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

    engine = context.session.db_engine
    workspace = context.session.workspace()
    done: list[dict[str, Any]] = []
    for rule in context.monitor.rules:
        recovered = RECOVERED in rule.when and _recovered(context, rule.after)
        if context.status not in rule.when and not recovered:
            continue
        previous = monitor_runs.recent_statuses(
            engine, context.monitor.name, context.version, rule.after - 1, workspace
        )
        # (For `recovered`, `after` already counted the healthy runs since the unhealthy one.)
        if not recovered and (
            len(previous) < rule.after - 1 or any(s not in rule.when for s in previous)
        ):
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
        # A recovery is told as such ("RECOVERED on models:/fraud/2"), not as one more healthy run.
        acting = replace(context, status=RECOVERED) if recovered else context
        for call in rule.actions:
            if context.status in NO_VERDICT and call.name != "alert":
                continue  # refused when the configuration is read; kept as a second guard
            try:
                # Every action acts as steward-monitor: what it changes through the session's
                # governed store is decided by policies and audited under that name.
                with as_monitor():
                    result = actions[call.name].run(acting, call.params)
                ok = True
            except Exception as exc:
                result = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
                if (who := context.session.pm.plugin_in_traceback(exc)) is not None:
                    result = f"plugin {who} failed: {result}"
                ok = False
                _logger.warning(
                    "monitor %s: action %s failed: %s", context.monitor.name, call.name, result
                )
            context.done.append(f"{call.name}: {result}")
            done.append({"rule": rule.index, "action": call.name, "ok": ok, "result": result})
    return done


def _recovered(context: ActionContext, after: int) -> bool:
    """This run is healthy, the ``after - 1`` runs before it on the same version were healthy
    too, and the run before those was unhealthy (runs with insufficient data are looked past)."""
    from mlflow_steward.monitoring.verdict import HEALTHY, INSUFFICIENT
    from mlflow_steward.records import monitor_runs

    if context.status != HEALTHY:
        return False
    statuses = [
        s
        for s in monitor_runs.recent_statuses(
            context.session.db_engine,
            context.monitor.name,
            context.version,
            after + _LOOK_PAST,
            context.session.workspace(),
        )
        if s != INSUFFICIENT
    ]
    return (
        len(statuses) >= after
        and all(s == HEALTHY for s in statuses[: after - 1])
        and statuses[after - 1] in UNHEALTHY
    )


#: How many runs with insufficient data ``when: recovered`` looks past.
_LOOK_PAST = 20


def _streak(statuses: list[str], when: tuple[str, ...]) -> int:
    n = 0
    for status in statuses:
        if status not in when:
            break
        n += 1
    return n
