"""Hook specifications: the contract between steward and its plugins.

Hooks are grouped by phase. Every hook name starts with ``steward_``; call them with keyword
arguments only (through :class:`mlflow_steward.plugins.manager.StewardHooks`). An implementation may
accept fewer arguments than its specification. Arguments may be added in later releases, never renamed
or removed.

Failure contracts, by kind of hook:

* registration hooks (plural nouns) yield frozen dataclasses from :mod:`mlflow_steward.plugins.types`;
  an exception stops plugin loading with the plugin's name.
* a policy's ``check`` **fails closed**: an exception, a wrong return type or a timeout is a deny
  attributed to the plugin.
* observer hooks (``steward_after_*``, ``steward_on_*_error``) are **isolated**: an exception is
  logged with the plugin's name and never changes the decision nor stops the other observers.
* ``steward_before_deploy`` may stop a deployment step by raising: the error **propagates** to the
  caller after ``steward_on_deploy_error`` has seen it, and nothing is started.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

from mlflow_steward import PROJECT_NAME

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from mlflow_steward.plugins.events import ActionEvent, Decision
    from mlflow_steward.plugins.targets import DeploymentEvent, DeploymentInfo
    from mlflow_steward.plugins.types import (
        ActionContext,
        Alerter,
        CardSection,
        Command,
        DataSource,
        DeploymentTarget,
        Detector,
        MonitorAction,
        Policy,
    )

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


# --- registration ---------------------------------------------------------------------------


@hookspec
def steward_policies() -> Iterable[Policy]:
    """Yield the :class:`~mlflow_steward.plugins.types.Policy` objects this plugin offers.

    Policy names are global: two plugins offering the same name stop loading with an error naming
    both. A policy applies where the configuration's ``policies:`` list names it with ``use:``, or
    everywhere when it is ``enabled_by_default``.

    Example::

        @hookimpl
        def steward_policies():
            yield Policy(name="owner-is-team", check=_check, description="...")
    """
    return ()  # a specification: never called


@hookspec
def steward_commands() -> Iterable[Command]:
    """Yield :class:`~mlflow_steward.plugins.types.Command` objects to add to the ``steward`` CLI.

    A command whose name is already taken (by a built-in or another plugin) stops the CLI with an
    error naming both providers.

    Example::

        @hookimpl
        def steward_commands():
            yield Command(name="report", load=lambda: report_cli, help="Print the team report")
    """
    return ()  # a specification: never called


@hookspec
def steward_deployment_targets() -> Iterable[DeploymentTarget]:
    """Yield the :class:`~mlflow_steward.plugins.types.DeploymentTarget` objects this plugin offers.

    Target names are global, like policy names: two plugins offering one name stop loading with an
    error naming both. Every target is reachable as ``steward deploy ... -t NAME`` and from MLflow's
    CLI as ``mlflow deployments ... -t steward:/NAME``.

    Example::

        @hookimpl
        def steward_deployment_targets():
            yield DeploymentTarget(
                name="k8s", kind="onprem", client=K8sClient, help="Kubernetes Deployments"
            )
    """
    return ()  # a specification: never called


# --- monitoring -----------------------------------------------------------------------------


@hookspec
def steward_detectors() -> Iterable[Detector]:
    """Yield :class:`~mlflow_steward.plugins.types.Detector` objects: drift tests a monitor can
    name under ``detector:``. Names are global; two plugins offering one name is an error.

    Example::

        @hookimpl
        def steward_detectors():
            yield Detector(name="energy", kinds=("numeric",), measure=energy, help="energy distance")
    """
    return ()  # a specification: never called


@hookspec
def steward_alerters() -> Iterable[Alerter]:
    """Yield :class:`~mlflow_steward.plugins.types.Alerter` objects: channels that ``alerters:``
    entries of steward.yaml can ``use:`` (built-ins: webhook, slack, smtp).

    Example::

        @hookimpl
        def steward_alerters():
            yield Alerter(name="pager", send=page, help="PagerDuty", options=(SERVICE_KEY,))
    """
    return ()  # a specification: never called


@hookspec
def steward_monitor_actions() -> Iterable[MonitorAction]:
    """Yield :class:`~mlflow_steward.plugins.types.MonitorAction` objects: what a monitor rule
    can ``do:`` (built-ins: tag, alert, demote, rollback).

    Example::

        @hookimpl
        def steward_monitor_actions():
            yield MonitorAction(name="freeze", run=freeze, help="tag the version frozen")
    """
    return ()  # a specification: never called


@hookspec
def steward_data_sources() -> Iterable[DataSource]:
    """Yield :class:`~mlflow_steward.plugins.types.DataSource` objects: where a monitor reads
    current data from (built-ins: files, requests).

    Example::

        @hookimpl
        def steward_data_sources():
            yield DataSource(name="warehouse", read=read_warehouse, help="a SQL query")
    """
    return ()  # a specification: never called


@hookspec(firstresult=True)
def steward_retrain(context: ActionContext, params: Mapping[str, Any]) -> str | None:
    """Retrain the monitored model your way (an Airflow DAG, a CI pipeline, a Kubernetes Job);
    return a one-line description of what was started, or ``None`` to leave it to the next
    plugin and finally to steward's own (re-running the producing run's MLflow project from its
    git commit). Called by the ``retrain`` rule action inside its governed ``retrain`` action,
    so a policy can refuse it first; an exception fails the action (reported, not raised).

    Example::

        @hookimpl
        def steward_retrain(context, params):
            dag_run = airflow.trigger("retrain-" + context.model, conf={"version": context.version})
            return f"triggered Airflow run {dag_run.id}"
    """


# --- documentation --------------------------------------------------------------------------


@hookspec
def steward_card_sections(
    model: str, version: str, lineage: Mapping[str, Any]
) -> Iterable[CardSection]:
    """Yield :class:`~mlflow_steward.plugins.types.CardSection` objects to add to the model card
    of ``model`` ``version`` (``steward card``), after steward's own sections. ``lineage`` is what
    ``steward lineage --json`` prints for the version (read-only).

    An exception, or an item that is not a ``CardSection``, stops the card with an error naming
    the plugin: a card missing a section the team requires is not written.

    Example::

        @hookimpl
        def steward_card_sections(model, version, lineage):
            yield CardSection(title="Risk owner", rows=(("owner", "risk@example.com"),))
    """
    return ()  # a specification: never called


# --- governance -----------------------------------------------------------------------------


@hookspec(firstresult=True)
def steward_resolve_actor(default: str) -> str | None:
    """Return the identity that performs the current action, or ``None`` to leave it to others.

    Stops at the first non-``None`` result. ``default`` is what steward found itself
    (``MLFLOW_STEWARD_ACTOR``, else the operating-system user). An exception propagates: an
    action whose actor cannot be determined is not carried out.

    Not called where the identity is already fixed: in the server (the request's identity, from
    ``MLFLOW_STEWARD_AUTH``) and for steward's own automation (``steward-monitor``).

    Example::

        @hookimpl
        def steward_resolve_actor(default):
            return os.environ.get("CI_COMMIT_AUTHOR")
    """


@hookspec
def steward_after_decision(event: ActionEvent, decision: Decision) -> None:
    """Observe every decision, allowed or refused, after it is written to the audit log.

    Isolated: an exception is logged with the plugin's name and changes nothing.

    Example::

        @hookimpl
        def steward_after_decision(event, decision):
            if not decision.allowed:
                metrics.increment("steward.denied", tags={"action": event.action})
    """


@hookspec
def steward_on_policy_error(policy: str, event: ActionEvent, error: BaseException) -> None:
    """Observe a policy that raised, returned a wrong type or timed out (the action is refused).

    Isolated: an exception is logged with the plugin's name and changes nothing.

    Example::

        @hookimpl
        def steward_on_policy_error(policy, event, error):
            sentry_sdk.capture_exception(error)
    """


# --- deployment -----------------------------------------------------------------------------


@hookspec
def steward_before_deploy(event: DeploymentEvent) -> None:
    """Called after governance allowed a deployment step and before the target acts on it.

    Raising stops the step: the error propagates to the caller (after
    ``steward_on_deploy_error``), nothing is started, and the refusal is on the audit log.

    Example::

        @hookimpl
        def steward_before_deploy(event):
            if event.target == "steward-onprem" and not change_ticket_open():
                raise RuntimeError("no open change ticket")
    """


@hookspec
def steward_after_deploy(event: DeploymentEvent, deployment: DeploymentInfo) -> None:
    """Observe a deployment step that completed (create, update, rollback, promote, delete).

    Isolated: an exception is logged with the plugin's name and changes nothing.

    Example::

        @hookimpl
        def steward_after_deploy(event, deployment):
            chat.post(f"{deployment.name} now serves v{deployment.version}")
    """


@hookspec
def steward_on_deploy_error(event: DeploymentEvent, error: BaseException) -> None:
    """Observe a deployment step that failed; the error then propagates to the caller.

    Isolated: an exception is logged with the plugin's name and changes nothing.

    Example::

        @hookimpl
        def steward_on_deploy_error(event, error):
            pager.trigger(f"deploy of {event.name} failed: {error}")
    """
