"""A plugin as its author writes it, importing the contract from ``mlflow_steward.plugins``.

Not a test module (pytest does not collect it): ``mypy`` checks it strictly in the ``lint`` env, so
a public name that stops resolving to its type (the package loads its names lazily, through a
module ``__getattr__`` that mypy would otherwise read as ``Any``) or a contract type that stops
fitting how plugins use it fails lint. ``assert_type`` pins what a plugin author relies on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, assert_type

from mlflow_steward import hookimpl
from mlflow_steward.plugins import (
    ActionContext,
    ActionEvent,
    Decision,
    DeploymentContext,
    DeploymentError,
    DeploymentInfo,
    DeploymentTarget,
    Detector,
    DetectorResult,
    FactUnavailable,
    ModelFacts,
    MonitorAction,
    Option,
    Policy,
    PolicyVerdict,
    ResolvedModel,
    StewardServices,
    TargetClient,
)
from mlflow_steward.plugins.testing import StaticFacts, make_event

# -- a policy --------------------------------------------------------------------------------


def owner_is_set(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    facts = event.facts
    if facts is None:
        return PolicyVerdict.deny("no version to check")
    assert_type(facts, ModelFacts)
    try:
        owner = facts.version_tags.get(str(options["tag"]), "")
    except FactUnavailable as exc:
        return PolicyVerdict.deny(f"cannot read the tags: {exc}")
    assert_type(owner, str)
    if not owner:
        return PolicyVerdict.deny("no owner")
    return PolicyVerdict.allow(f"owned by {owner}")


@hookimpl
def steward_policies() -> Iterator[Policy]:
    yield Policy(
        name="owner-is-set",
        check=owner_is_set,
        description="The version names its owner.",
        options=(Option("tag", "str", "the tag holding the owner", "owner"),),
    )


def decide_in_a_unit_test() -> bool:
    verdict = owner_is_set(make_event(facts=StaticFacts(version_tags={"owner": "a"})), {})
    assert_type(verdict, PolicyVerdict)
    assert_type(verdict.allowed, bool)
    return verdict.allowed


def after_decision(event: ActionEvent, decision: Decision) -> str:
    assert_type(decision.allowed, bool)
    return f"{event.action} on {event.target}: {decision.allowed}"


# -- a detector ------------------------------------------------------------------------------


def range_shift(
    columns: Mapping[str, tuple[Any, Any]], params: Mapping[str, Any]
) -> dict[str, DetectorResult]:
    out: dict[str, DetectorResult] = {}
    for name, (reference, current) in columns.items():
        shift = abs(float(current.max()) - float(reference.max()))
        out[name] = DetectorResult(shift, threshold=float(params["limit"]), drifted=shift > 1)
    return out


@hookimpl
def steward_detectors() -> Iterator[Detector]:
    yield Detector(
        name="range-shift",
        kinds=("numeric",),
        measure=range_shift,
        help="how far the maximum moved",
        options=(Option("limit", "number", "largest shift that is not drift", 1.0),),
    )


# -- a deployment target ---------------------------------------------------------------------


class EchoClient(TargetClient):
    """Serves nothing; answers with its inputs."""

    def create(
        self, info: DeploymentInfo, model: ResolvedModel, traffic: int | None
    ) -> DeploymentInfo:
        if traffic not in (None, 100):
            raise DeploymentError("echo has no canary")
        ctx = self.context
        assert_type(ctx, DeploymentContext)
        ctx.progress(f"deploying {model.uri} as {info.name} for {ctx.actor}")
        recorded = ctx.store.get(info.name)
        if recorded is not None:
            assert_type(recorded, DeploymentInfo)
        info.version, info.status = model.version, "serving"
        info.traffic = {model.version: 100}
        return info

    def update(
        self, info: DeploymentInfo, model: ResolvedModel, traffic: int | None
    ) -> DeploymentInfo:
        return self.create(info, model, traffic)

    def delete(self, info: DeploymentInfo) -> None:
        self.context.store.set_runtime(info.name, {})

    def predict(self, info: DeploymentInfo, inputs: Any) -> Any:
        return inputs

    def rollback(self, info: DeploymentInfo, model: ResolvedModel | None) -> DeploymentInfo:
        if model is None:
            raise DeploymentError("echo has no canary to undo")
        return self.create(info, model, None)

    def health(self, info: DeploymentInfo) -> dict[str, Any]:
        return {"healthy": info.status == "serving"}


@hookimpl
def steward_deployment_targets() -> Iterator[DeploymentTarget]:
    yield DeploymentTarget(
        name="echo",
        kind="onprem",
        client=EchoClient,
        help="answers with its inputs",
        options=(Option("greeting", "str", "unused", "hello"),),
    )


# -- a rule action ---------------------------------------------------------------------------


def flag_for_review(context: ActionContext, params: Mapping[str, Any]) -> str:
    session = context.session
    assert_type(session, StewardServices)
    if context.dry_run or context.version is None:
        return f"would flag v{context.version}"
    from mlflow.entities.model_registry import ModelVersionTag

    # Through the governed store: policies decide the write and it is audited.
    session.store.set_model_version_tag(
        context.model, context.version, ModelVersionTag("review", str(params["reason"]))
    )
    holder = session.store.holder_of(context.model, "production")
    assert_type(holder, str | None)
    assert_type(session.actor(), str)
    return f"flagged v{context.version} (production: {holder or 'nobody'})"


@hookimpl
def steward_monitor_actions() -> Iterator[MonitorAction]:
    yield MonitorAction(
        name="flag-for-review",
        run=flag_for_review,
        help="tag the version for a person to review",
        options=(Option("reason", "str", "why", "drift"),),
    )
