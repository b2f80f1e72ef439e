"""Observers (hooks ``steward_after_decision``, ``steward_on_policy_error``,
``steward_before_deploy``, ``steward_after_deploy``, ``steward_on_deploy_error``).

Each appends one JSON line to the file named by ``STEWARD_TEAM_EVENTS`` (nothing when it is
unset): a stand-in for the team's event bus. Observers are isolated: an exception in one is
logged and the action goes on, except ``steward_before_deploy``, whose exception stops the
deployment step before the target is called.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins import ActionEvent, Decision, DeploymentEvent, DeploymentInfo


def _emit(kind: str, **fields: Any) -> None:
    path = os.environ.get("STEWARD_TEAM_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"hook": kind, **fields}, sort_keys=True, default=str) + "\n")


@hookimpl
def steward_after_decision(event: ActionEvent, decision: Decision) -> None:
    _emit(
        "after_decision",
        action=event.action,
        model=event.model,
        version=event.version,
        actor=event.actor,
        allowed=decision.allowed,
    )


@hookimpl
def steward_on_policy_error(policy: str, event: ActionEvent, error: BaseException) -> None:
    _emit("on_policy_error", policy=policy, action=event.action, error=str(error))


@hookimpl
def steward_before_deploy(event: DeploymentEvent) -> None:
    if event.options.get("production") and event.actor.startswith("anonymous"):
        raise RuntimeError("production deployments need a named actor")
    _emit("before_deploy", operation=event.operation, name=event.name, target=event.target)


@hookimpl
def steward_after_deploy(event: DeploymentEvent, deployment: DeploymentInfo) -> None:
    _emit(
        "after_deploy",
        operation=event.operation,
        name=deployment.name,
        version=deployment.version,
        status=deployment.status,
    )


@hookimpl
def steward_on_deploy_error(event: DeploymentEvent, error: BaseException) -> None:
    _emit("on_deploy_error", operation=event.operation, name=event.name, error=str(error))
