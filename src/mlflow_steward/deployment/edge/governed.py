"""Edge steps as governed actions: policies decide ``deploy`` (target ``steward-edge``, kind
``edge``, with the operation) before anything is written or published, and the decision is
audited. Every decision is made on a bundle file that exists, in a folder of steward's own (a
build is made in a temporary folder first; a file to publish is copied there), with the facts
steward measures from it (size, model digest, ONNX model and parity: :mod:`.facts`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mlflow_steward.deployment.edge.bundle import (
    BuiltBundle,
    build_bundle,
    check_model_name,
    read_manifest,
)
from mlflow_steward.deployment.edge.storage import DEFAULT_LOCK_WAIT
from mlflow_steward.errors import DeploymentError, RegistryURIError

TARGET = "steward-edge"
KIND = "edge"
T = TypeVar("T")


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


def _governed_bundle(
    session: Any,
    path: Path,
    context: dict[str, Any],
    write: Callable[[dict[str, Any]], T],
    *,
    parity_tolerance: float = 1e-5,
    expect: tuple[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> T:
    """Measure the bundle at ``path`` (:func:`.facts.measure`: its size and ONNX facts, never
    its manifest's word), then decide ``deploy`` on the version it holds with those facts in
    the event; on allow run ``write(manifest)``. A bundle that is not what its manifest says is
    refused as ``edge-bundle-integrity``; both refusals are audited. ``path`` must be a copy
    no one else writes (the file measured is the file written). ``expect``: the ``(model,
    version)`` the bundle must hold."""
    from mlflow_steward.deployment.edge.facts import INTEGRITY, BundleRefused, measure

    manifest = read_manifest(path)
    name, version = manifest["model"], manifest["version"]
    uri = f"models:/{name}/{version}"
    resolve(session, uri)
    base = {"target": TARGET, "target_kind": KIND, "requested": uri, **context}
    try:
        manifest, facts = measure(
            path,
            tracking_uri=session.tracking_uri,
            registry_uri=session.registry_uri,
            parity_tolerance=parity_tolerance,
            progress=progress,
            expect=expect,
        )
    except BundleRefused as exc:
        event = session.version_event("deploy", name, version, base)
        raise session.governor.refuse(event, INTEGRITY, str(exc)) from None
    event = session.version_event("deploy", name, version, {**base, **facts})
    return session.governed(event, lambda: write(manifest))


def stage(
    channel: Any,
    model: str,
    version: str,
    requested: str,
    out: Path,
    *,
    tracking_uri: str,
    registry_uri: str,
    progress: Callable[[str], None] | None = None,
    onnx: bool = False,
    parity_tolerance: float = 1e-5,
) -> Path:
    """The bundle to publish of ``model`` ``version`` to ``channel``, written to ``out``: the
    one the channel holds (published before: the same bytes again, a version's bundle never
    changes once devices may have it), else a new build (with ONNX when ``onnx``)."""
    import shutil

    stored = channel.stored(model, version)
    if stored is None:
        return build_bundle(
            tracking_uri=tracking_uri,
            registry_uri=registry_uri,
            name=model,
            version=version,
            requested=requested,
            output=out,
            progress=progress,
            onnx=onnx,
            parity_tolerance=parity_tolerance,
        ).path
    with channel.local_copy(stored) as copy:
        shutil.copyfile(copy, out)
    if onnx and not read_manifest(out).get("onnx"):
        raise DeploymentError(
            f"{requested}: the channel holds {model} v{version} already, without an ONNX model, "
            "and a published version never changes; publish it without ONNX"
        )
    return out


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
    production: bool = False,
) -> BuiltBundle:
    """Build the bundle of ``model_uri`` in a temporary folder, then ask policies ``deploy``
    (operation ``build``) with the bundle's measured facts (:func:`.facts.measure`) and copy it
    to ``output`` only when they allow; a refusal raises
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
        out = bundle_path(output, staged.model, staged.version)

        def write(manifest: dict[str, Any]) -> BuiltBundle:
            out.parent.mkdir(parents=True, exist_ok=True)
            partial = out.with_name(f".{out.name}.partial")
            shutil.copyfile(staged.path, partial)
            os.replace(partial, out)
            return BuiltBundle(out, manifest)

        context = {"operation": "build", "requested": model_uri, "production": production}
        return _governed_bundle(
            session, staged.path, context, write, parity_tolerance=parity_tolerance
        )


def governed_publish(
    session: Any,
    source: str,
    channel: str | os.PathLike[str],
    keys: str | os.PathLike[str] | None,
    *,
    progress: Callable[[str], None] | None = None,
    lock_wait: float = DEFAULT_LOCK_WAIT,
    rollout: dict[str, Any] | None = None,
    onnx: bool = False,
    parity_tolerance: float = 1e-5,
    production: bool = False,
) -> Any:
    """Publish ``source`` to ``channel`` (a folder or ``s3://bucket/prefix``): a bundle file, or
    a ``models:/`` URI (built first, with an ONNX model when ``onnx``; a version the channel
    holds already is published again as it was). Governed as ``deploy`` (operation ``publish``)
    on the version the bundle holds, decided on the bundle's measured facts
    (:func:`_governed_bundle`: a file is copied first, and the copy measured and published).
    ``rollout`` (a plan from :func:`.rollout.parse_plan`) stages the release; policies see it in
    the event's details. Returns the channel's new :class:`Release`."""
    import shutil
    import tempfile

    from mlflow_steward.deployment.edge.channel import Channel

    target = Channel(channel, keys, lock_wait=lock_wait)
    target.settings  # noqa: B018 -- "not a channel" before anything is built
    context = {
        "operation": "publish",
        "channel": str(target.location),
        "production": production,
        **({"rollout": rollout} if rollout else {}),
    }
    expect = resolve(session, source) if source.startswith("models:/") else None
    with tempfile.TemporaryDirectory(prefix="steward-edge-") as tmp:
        # A file keeps its name: errors about the copy name the file the user gave.
        path = Path(tmp, Path(source).name if expect is None else "bundle.tar.gz")
        if expect is None:
            try:
                shutil.copyfile(source, path)
            except OSError as exc:
                raise DeploymentError(f"cannot read {source}: {exc.strerror or exc}") from None
        else:
            context["requested"] = source
            stage(
                target,
                *expect,
                source,
                path,
                tracking_uri=session.tracking_uri,
                registry_uri=session.registry_uri,
                progress=progress,
                onnx=onnx,
                parity_tolerance=parity_tolerance,
            )
        return _governed_bundle(
            session,
            path,
            context,
            lambda manifest: target.publish(path, rollout=rollout),
            parity_tolerance=parity_tolerance,
            expect=expect,
            progress=progress,
        )


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
    context = {
        "operation": "halt",
        "channel": str(target.location),
        "production": False,
        "halts": {**halts, "devices": list(state.failed)},
    }
    with target.local_copy(stored) as path:
        return _governed_bundle(
            session,
            Path(path),
            context,
            lambda manifest: target.publish(path, halts=halts),
            expect=(previous.model, previous.version),
        )


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
