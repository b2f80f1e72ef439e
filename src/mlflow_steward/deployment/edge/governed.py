"""Edge steps as governed actions: policies decide ``deploy`` (target ``steward-edge``, kind
``edge``, with the operation) before anything is written or published, and the decision is
audited. A build is made in a temporary folder first, so that policies see its facts (size, ONNX
model and parity check: :func:`bundle_facts`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mlflow_steward.deployment.edge.bundle import BuiltBundle, build_bundle, check_model_name
from mlflow_steward.deployment.edge.storage import DEFAULT_LOCK_WAIT
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


def bundle_facts(manifest: dict[str, Any], size: int) -> dict[str, Any]:
    """What policies see of a built bundle in the ``deploy`` event's context: ``bundle_size``
    (bytes, the wheels included), ``onnx`` (``{present, parity_ok, max_abs_diff,
    label_agreement}``) and ``wheels`` (``{present, count, bytes}``)."""
    entry = manifest.get("onnx") or {}
    parity = entry.get("parity") or {}
    wheels = manifest.get("wheels") or {}
    return {
        "bundle_size": int(size),
        "wheels": {
            "present": bool(wheels),
            "count": len(wheels.get("files") or {}),
            "bytes": int(wheels.get("bytes") or 0),
        },
        "onnx": {
            "present": bool(entry),
            "parity_ok": parity.get("ok") if entry else None,
            "max_abs_diff": parity.get("max_abs_diff"),
            "label_agreement": parity.get("label_agreement"),
        },
    }


def governed_build(
    session: Any,
    model_uri: str,
    output: str | os.PathLike[str],
    *,
    progress: Callable[[str], None] | None = None,
    onnx: bool = False,
    parity_tolerance: float = 1e-5,
    wheels: bool = False,
    platforms: tuple[str, ...] = (),
    python_version: str | None = None,
    **context: Any,
) -> BuiltBundle:
    """Build the bundle of ``model_uri`` in a temporary folder, then ask policies ``deploy``
    (operation ``build``) with the bundle's facts (:func:`bundle_facts`) and move it to
    ``output`` only when they allow; a refusal raises
    :class:`~mlflow_steward.errors.PolicyDenied` and writes nothing."""
    import shutil
    import tempfile

    from mlflow_steward.deployment.edge.bundle import bundle_path

    name, version = resolve(session, model_uri)
    with tempfile.TemporaryDirectory(prefix="steward-edge-build-") as tmp:
        staged = build_bundle(
            tracking_uri=session.tracking_uri,
            registry_uri=session.registry_uri,
            name=name,
            version=version,
            requested=model_uri,
            output=tmp,
            progress=progress,
            onnx=onnx,
            parity_tolerance=parity_tolerance,
            wheels=wheels,
            platforms=platforms,
            python_version=python_version,
        )
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
                **bundle_facts(staged.manifest, staged.path.stat().st_size),
                **context,
            },
        )
        out = bundle_path(output, name, version)

        def write() -> BuiltBundle:
            out.parent.mkdir(parents=True, exist_ok=True)
            partial = out.with_name(f".{out.name}.partial")
            shutil.copyfile(staged.path, partial)
            os.replace(partial, out)
            return BuiltBundle(out, staged.manifest)

        return session.governed(event, write)


def governed_publish(
    session: Any,
    source: str,
    channel: str | os.PathLike[str],
    keys: str | os.PathLike[str] | None,
    *,
    progress: Callable[[str], None] | None = None,
    lock_wait: float = DEFAULT_LOCK_WAIT,
    rollout: dict[str, Any] | None = None,
    **context: Any,
) -> Any:
    """Publish ``source`` to ``channel`` (a folder or ``s3://bucket/prefix``): a bundle file, or a ``models:/`` URI (built
    first). Governed as ``deploy`` (operation ``publish``) on the version the bundle holds; a
    bundle whose content digest is not the one recorded for that version at registration is
    refused before policies are asked. ``rollout`` (a plan from :func:`.rollout.parse_plan`)
    stages the release; policies see it in the event's details. Returns the channel's new
    :class:`Release`."""
    import tempfile

    from mlflow import MlflowClient

    from mlflow_steward.deployment.edge.bundle import read_manifest
    from mlflow_steward.deployment.edge.channel import Channel
    from mlflow_steward.plugins.events import DIGEST_TAG

    target = Channel(channel, keys, lock_wait=lock_wait)
    target.settings  # noqa: B018 -- "not a channel" before anything is built
    if source.startswith("models:/"):
        name, version = resolve(session, source)
        stored = target.stored(name, version)
        if stored is not None:
            # Published before: the same bytes become the newest release again (a version's
            # bundle never changes once devices may have it).
            with target.local_copy(stored) as path:
                return governed_publish(
                    session,
                    str(path),
                    channel,
                    keys,
                    lock_wait=lock_wait,
                    rollout=rollout,
                    **context,
                )
        staging: dict[str, Any] = {**({"rollout": rollout} if rollout else {}), **context}
        with tempfile.TemporaryDirectory(prefix="steward-edge-") as tmp:
            built = governed_build(
                session,
                source,
                tmp,
                progress=progress,
                operation="publish",
                channel=str(target.location),
                **staging,
            )
            return target.publish(built.path, rollout=rollout)
    manifest = read_manifest(source)
    name, version = manifest["model"], manifest["version"]
    uri = f"models:/{name}/{version}"
    resolve(session, uri)
    recorded = (
        MlflowClient(session.tracking_uri, session.registry_uri)
        .get_model_version(name, version)
        .tags.get(DIGEST_TAG)
    )
    if recorded is not None and recorded != manifest["digest"]:
        raise DeploymentError(
            f"{source}: the bundle holds artifacts with digest {manifest['digest']}, but "
            f"{uri} was registered with {recorded}; it was not built from that version"
        )
    event = session.version_event(
        "deploy",
        name,
        version,
        {
            "target": TARGET,
            "target_kind": KIND,
            "operation": "publish",
            "requested": manifest.get("requested") or uri,
            "channel": str(target.location),
            "production": bool(context.pop("production", False)),
            **bundle_facts(manifest, os.path.getsize(source)),
            **({"rollout": rollout} if rollout else {}),
            **context,
        },
    )
    return session.governed(event, lambda: target.publish(source, rollout=rollout))


# -- staged rollouts -----------------------------------------------------------------------------


def read_rollout(
    channel: str | os.PathLike[str], uploads: str | os.PathLike[str], now: float | None = None
) -> Any:
    """The channel's staged rollout as the devices reporting to ``uploads`` see it
    (:class:`~.rollout.RolloutState`; ``None``: no staged rollout)."""
    import time

    from mlflow_steward.deployment.edge.channel import Channel
    from mlflow_steward.deployment.edge.rollout import rollout_state
    from mlflow_steward.deployment.edge.stats import read_devices

    releases = Channel(channel).releases()
    reports = read_devices(str(uploads))
    return rollout_state(releases, reports, time.time() if now is None else now)


def governed_halt(
    session: Any,
    state: Any,
    channel: str | os.PathLike[str],
    keys: str | os.PathLike[str] | None,
    *,
    lock_wait: float = DEFAULT_LOCK_WAIT,
) -> Any:
    """Halt the staged release of ``state`` (:class:`~.rollout.RolloutState`): publish the
    release before it again, with no plan (every device runs it: those the rollout reached go
    back, the others stay) and ``halts`` naming the halted release and the failures, signed in
    its ``custom``. Governed as ``deploy`` (operation ``halt``) on the version that goes back
    out; returns the channel's new :class:`Release`."""
    from mlflow_steward.deployment.edge.channel import Channel

    target = Channel(channel, keys, lock_wait=lock_wait)
    releases = target.releases()
    if not releases or releases[-1].release != state.release:
        # Another check halted it meanwhile, or a newer release superseded it.
        raise DeploymentError(
            f"release {state.release} is no longer the channel's newest (release "
            f"{releases[-1].release if releases else None} is): nothing was published"
        )
    previous = next(
        (
            r
            for r in reversed(releases)
            if r.release < state.release and (r.model, r.version) != (state.model, state.version)
        ),
        None,
    )
    if previous is None:
        raise DeploymentError(
            f"cannot halt release {state.release} ({state.model} v{state.version}): the channel "
            "has no earlier release to go back to; nothing was published"
        )
    stored = target.stored(previous.model, previous.version)
    if stored is None:
        raise DeploymentError(f"{target.location} no longer holds {previous.path}")
    rate = state.failure_rate
    halts = {
        "release": state.release,
        "model": state.model,
        "version": state.version,
        "step": state.step,
        "failed": len(state.failed),
        "failure_rate": format(rate, ".4g") if rate is not None else None,
        "max_failure_rate": format(state.max_failure_rate, ".4g"),
    }
    resolve(session, f"models:/{previous.model}/{previous.version}")
    event = session.version_event(
        "deploy",
        previous.model,
        previous.version,
        {
            "target": TARGET,
            "target_kind": KIND,
            "operation": "halt",
            "requested": f"models:/{previous.model}/{previous.version}",
            "channel": str(target.location),
            "production": False,
            "halts": {**halts, "devices": list(state.failed)},
        },
    )
    with target.local_copy(stored) as path:
        return session.governed(event, lambda: target.publish(path, halts=halts))


def record_step(session: Any, state: Any, channel: str | os.PathLike[str]) -> Any:
    """Record in the audit log that ``state``'s rollout reached its current step, once per step
    (a ``deploy`` entry, operation ``rollout-step``, outcome ``observed``; the first step is the
    publish's own entry). Steps advance with time, as the signed plan says, so this records
    what happened rather than asking policies. Returns the new entry, or ``None``."""
    from mlflow_steward.deployment.edge.channel import Channel
    from mlflow_steward.plugins.events import Decision

    if state.step == 0:
        return None
    location = str(Channel(channel).location)
    seen = {
        e.details.get("step")
        for e in session.audit.entries(model=state.model, action="deploy")
        if e.details.get("operation") == "rollout-step"
        and e.details.get("channel") == location
        and e.details.get("release") == state.release
    }
    if state.step in seen:
        return None
    event = session.version_event(
        "deploy",
        state.model,
        state.version,
        {
            "target": TARGET,
            "target_kind": KIND,
            "operation": "rollout-step",
            "channel": location,
            "release": state.release,
            "step": state.step,
            "share": state.steps[state.step],
            "failure_rate": state.failure_rate,
            "failed": len(state.failed),
        },
    )
    return session.governor.record(event, Decision(event, ()), "observed")


def check_rollout(
    session: Any,
    channel: str | os.PathLike[str],
    uploads: str | os.PathLike[str],
    keys: str | os.PathLike[str] | None,
    *,
    lock_wait: float = DEFAULT_LOCK_WAIT,
    now: float | None = None,
) -> tuple[Any, Any, Any]:
    """Read the channel's staged rollout from the devices' reports; when its failure rate is
    over the plan's threshold, halt it (:func:`governed_halt`), else record a step it reached
    since the last check (:func:`record_step`). Returns ``(state, the halting release or None,
    the step's audit entry or None)``."""
    state = read_rollout(channel, uploads, now)
    if state is None or state.verdict == "halted":
        return state, None, None
    if state.verdict != "halt":
        return state, None, record_step(session, state, channel)
    return state, governed_halt(session, state, channel, keys, lock_wait=lock_wait), None


def watch_rollout(
    session: Any,
    channel: str | os.PathLike[str],
    uploads: str | os.PathLike[str],
    keys: str | os.PathLike[str] | None,
    *,
    every: float,
    report: Callable[[Any, Any, Any], None],
    failed: Callable[[str], None],
    stop: Any,
    max_runs: int | None = None,
    lock_wait: float = DEFAULT_LOCK_WAIT,
) -> bool:
    """Run :func:`check_rollout` every ``every`` seconds until ``stop`` (a
    :class:`threading.Event`) is set or ``max_runs`` checks ran (``steward edge rollout watch``).
    Each check's result goes to ``report(state, halt, step)``. A check that raises (the channel
    or the uploads unreachable, a policy refusing the halt, a lock held too long) goes to
    ``failed`` as one line and the next check runs on time: the next check decides afresh from
    what the channel and the devices say then. Returns whether the last check succeeded."""
    import time

    ok, runs = True, 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            report(*check_rollout(session, channel, uploads, keys, lock_wait=lock_wait))
            ok = True
        except Exception as exc:  # a watch outlives any one check: logged, tried again
            failed(_one_line(exc))
            ok = False
        runs += 1
        if max_runs is not None and runs >= max_runs:
            break
        stop.wait(max(0.0, every - (time.monotonic() - started)))
    return ok


def _one_line(exc: BaseException) -> str:
    """``exc`` as the CLI shows an error: steward's and MLflow's messages (a policy's refusal)
    as they are, anything else with its type."""
    from mlflow_steward.errors import StewardError

    message = " ".join(str(getattr(exc, "message", None) or exc).split())
    if isinstance(exc, StewardError) or "MlflowException" in {
        c.__name__ for c in type(exc).__mro__
    }:
        return message
    return f"{type(exc).__name__}: {message}"
