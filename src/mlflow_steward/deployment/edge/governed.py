"""Edge steps as governed actions: policies decide ``deploy`` (target ``steward-edge``, kind
``edge``, with the operation) before anything is built or published, and the decision is
audited."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mlflow_steward.deployment.edge.bundle import BuiltBundle, build_bundle, check_model_name
from mlflow_steward.errors import DeploymentError, RegistryURIError

TARGET = "steward-edge"
KIND = "edge"


def resolve(session: Any, model_uri: str) -> tuple[str, str]:
    """``(name, version)`` of a registered ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``."""
    from mlflow_steward.errors import LifecycleError
    from mlflow_steward.registry import parse_model_uri

    try:
        ref = parse_model_uri(model_uri)
    except RegistryURIError as exc:
        raise DeploymentError(str(exc)) from None
    if ref.name is None:
        raise DeploymentError(
            f"{model_uri!r} is not a registered model version: edge bundles are built from "
            "registered versions (models:/NAME/VERSION or models:/NAME@ALIAS)"
        )
    check_model_name(ref.name)
    try:
        return ref.name, session.version_of(ref)
    except LifecycleError as exc:
        raise DeploymentError(f"unknown model {model_uri!r}: {exc}") from None


def governed_build(
    session: Any,
    model_uri: str,
    output: str | os.PathLike[str],
    *,
    progress: Callable[[str], None] | None = None,
    **context: Any,
) -> BuiltBundle:
    """Build the bundle of ``model_uri`` once policies allowed ``deploy`` (operation
    ``build``); a refusal raises :class:`~mlflow_steward.errors.PolicyDenied` and builds nothing."""
    name, version = resolve(session, model_uri)
    event = session.version_event(
        "deploy",
        name,
        version,
        {
            "target": TARGET,
            "target_kind": KIND,
            "operation": context.pop("operation", "build"),
            "requested": model_uri,
            "production": bool(context.pop("production", False)),
            **context,
        },
    )
    return session.governed(
        event,
        lambda: build_bundle(
            tracking_uri=session.tracking_uri,
            registry_uri=session.registry_uri,
            name=name,
            version=version,
            requested=model_uri,
            output=output,
            progress=progress,
        ),
    )
