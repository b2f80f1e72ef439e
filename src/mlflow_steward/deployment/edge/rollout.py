"""Staged rollouts: which devices a release reaches, and when.

``steward edge publish ... --rollout 10%,50%,100% --step-wait 10m --max-failure-rate 5%`` stores
a plan in the release's ``custom.steward.rollout`` (inside the targets metadata, so it is signed
by the targets keys and a device verifies it like the bundle's hash)::

    {"steps": [10, 50, 100], "step_wait": 600, "max_failure_rate": "0.05", "start": 1765000000}

Whole numbers and a decimal string: TUF signs canonical JSON, which has no floats (steps are
whole percentages, the wait and the start whole seconds; :func:`failure_threshold` reads the
rate).

Step ``i`` (its percentage of the devices) holds from ``start + i * step_wait``; the last step
holds from then on. A device's place in the fleet is a number in ``[0, 100)`` from a hash of its
id and the release, so the devices of a step are the same every time it is asked, a device
included at one step stays included at the later ones, and each release draws its own sample.
A device not included stays on the release it runs (:func:`release_for` picks the newest release
that includes it). Halting a rollout is publishing the previous version again: a release with no
plan includes every device.

The controller's side (:func:`rollout_state`): from the devices' reports, the share of the
devices on a staged release (or that failed installing it) that fail; over the plan's
``max_failure_rate``, the verdict is ``halt`` (:func:`~.governed.check_rollout` publishes the
previous version again, marked ``halts`` in its signed ``custom``).

Nothing here reads a clock or a file: the caller passes ``now``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from mlflow_steward.errors import DeploymentError


class RolloutPlanError(DeploymentError):
    """A rollout plan that cannot be followed (given on the command line, or found in a
    release)."""


def _percent(text: str, what: str) -> float:
    raw = text.strip()
    value = raw.removesuffix("%").strip()
    try:
        number = float(value)
    except ValueError:
        raise RolloutPlanError(f"{what}: {text!r} is not a percentage (e.g. 10%)") from None
    if not math.isfinite(number):
        raise RolloutPlanError(f"{what}: {text!r} is not a percentage (e.g. 10%)")
    return number


def parse_plan(
    rollout: str, step_wait: str | float, max_failure_rate: str | float
) -> dict[str, Any]:
    """The plan of ``--rollout 10%,50%,100% --step-wait 10m --max-failure-rate 5%`` (without its
    ``start``, set when the release is published); :class:`RolloutPlanError` says what is wrong.
    A failure rate is a percentage (``5%``) or a fraction (``0.05``)."""
    from mlflow_steward.plugins.options import parse_duration

    given = [_percent(part, "--rollout") for part in rollout.split(",")]
    if not given or any(not 0 < s <= 100 for s in given):
        raise RolloutPlanError(
            f"--rollout {rollout!r}: each step is a percentage above 0% and at most 100%"
        )
    if any(s != int(s) for s in given):
        raise RolloutPlanError(f"--rollout {rollout!r}: use whole percentages (e.g. 10%,50%,100%)")
    steps = [int(s) for s in given]
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise RolloutPlanError(f"--rollout {rollout!r}: the steps must grow (e.g. 10%,50%,100%)")
    if steps[-1] != 100:
        raise RolloutPlanError(
            f"--rollout {rollout!r}: the last step must be 100% (a release reaches every "
            "device in the end; halt it by publishing the previous version)"
        )
    try:
        wait = parse_duration(step_wait)
    except ValueError as exc:
        raise RolloutPlanError(f"--step-wait: {exc}") from None
    if round(wait) < 1:
        raise RolloutPlanError("--step-wait must be at least 1s")
    text = str(max_failure_rate).strip()
    rate = _percent(text, "--max-failure-rate")
    rate = rate / 100 if text.endswith("%") else rate
    if not 0 <= rate <= 1:
        raise RolloutPlanError(
            f"--max-failure-rate {text!r}: use a percentage from 0% to 100% (or a fraction 0 to 1)"
        )
    return {"steps": steps, "step_wait": round(wait), "max_failure_rate": format(rate, ".10g")}


def failure_threshold(plan: Mapping[str, Any]) -> float:
    """The share of failing devices (0 to 1) at which ``plan``'s rollout halts."""
    try:
        rate = float(plan["max_failure_rate"])
    except (KeyError, TypeError, ValueError):
        raise RolloutPlanError(f"a release's rollout plan is malformed: {plan!r}") from None
    if not 0 <= rate <= 1:
        raise RolloutPlanError(f"a release's rollout plan is malformed: {plan!r}")
    return rate


def _steward(release_custom: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``steward`` part of a target's ``custom`` (or the mapping itself when given that)."""
    inner = release_custom.get("steward")
    return inner if isinstance(inner, Mapping) else release_custom


def _checked(plan: Any) -> tuple[list[float], float, float]:
    try:
        steps = [float(s) for s in plan["steps"]]
        wait, start = float(plan["step_wait"]), float(plan["start"])
    except (KeyError, TypeError, ValueError):
        raise RolloutPlanError(f"a release's rollout plan is malformed: {plan!r}") from None
    if not steps or not all(map(math.isfinite, [*steps, wait, start])) or wait <= 0:
        raise RolloutPlanError(f"a release's rollout plan is malformed: {plan!r}")
    return steps, wait, start


def current_step(plan: Mapping[str, Any], now: float) -> int:
    """The index of the step ``plan`` is at, at time ``now`` (0 before it starts)."""
    steps, wait, start = _checked(plan)
    if now <= start:
        return 0
    return min(len(steps) - 1, int((now - start) // wait))


def device_bucket(device_id: str, release_custom: Mapping[str, Any]) -> float:
    """The device's place in ``[0, 100)`` for this release (from a SHA-256 of both)."""
    steward = _steward(release_custom)
    key = f"{device_id}\0{steward.get('model', '')}\0{steward.get('release', '')}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64 * 100


def included(device_id: str, release_custom: Mapping[str, Any], now: float) -> bool:
    """Whether the release whose ``custom`` (or ``custom.steward``, or ``Release.to_dict()``)
    is ``release_custom`` reaches ``device_id`` at time ``now``: always without a plan, else
    when the device's bucket is below the current step's percentage."""
    plan = _steward(release_custom).get("rollout")
    if plan is None:
        return True
    steps, _, _ = _checked(plan)
    return device_bucket(device_id, release_custom) < steps[current_step(plan, now)]


R = TypeVar("R")


def release_for(device_id: str, releases: Iterable[R], now: float) -> R | None:
    """The newest of ``releases`` (:class:`~.channel.Release` objects or their dicts) that
    includes ``device_id`` at ``now`` (``None``: none does)."""

    def custom(r: Any) -> Mapping[str, Any]:
        return r if isinstance(r, Mapping) else r.to_dict()

    ordered = sorted(releases, key=lambda r: int(custom(r)["release"]), reverse=True)
    return next((r for r in ordered if included(device_id, custom(r), now)), None)


# -- the controller's side -----------------------------------------------------------------------

#: The reasons a device gives for not installing a release that count against the release (a
#: refused download is the channel's or the network's fault, not the release's).
RELEASE_FAILURES = ("unhealthy", "interrupted")


def device_outcome(report: Mapping[str, Any], release: int) -> str | None:
    """What ``report`` (a device's report, :func:`~.stats.read_devices`) says of ``release``:
    ``"failed"`` (it failed installing it, or it runs it and reports ``health: failing``),
    ``"healthy"`` (it runs it and is not failing), ``None`` (it does not run it)."""
    failed = report.get("update_failed")
    if (
        isinstance(failed, Mapping)
        and failed.get("release") == release
        and failed.get("reason") in RELEASE_FAILURES
    ):
        return "failed"
    if report.get("release") == release:
        return "failed" if report.get("health") == "failing" else "healthy"
    return None


@dataclass(frozen=True)
class RolloutState:
    """A staged release's rollout as the devices report it."""

    release: int
    model: str
    version: str
    steps: list[int]
    #: The index of the current step (its share is ``steps[step]`` percent).
    step: int
    #: Devices that reported, and how many of them the current step includes.
    devices: int
    included: int
    #: Devices running the release, and those failing on it or failing to install it.
    on: int
    failed: list[str]
    max_failure_rate: float
    #: ``failed / (on + failed installs)``; ``None`` while no device has tried the release.
    failure_rate: float | None
    #: ``proceeding``, ``complete`` (at its last step), ``halt`` (over the threshold: to be
    #: halted) or ``halted`` (by release ``halted_by``).
    verdict: str
    halted_by: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _field(release: Any, name: str) -> Any:
    return release.get(name) if isinstance(release, Mapping) else getattr(release, name)


def rollout_state(
    releases: Sequence[Any], reports: Iterable[Mapping[str, Any]], now: float
) -> RolloutState | None:
    """The state of the channel's staged rollout: the newest release when it has a plan, or the
    one the newest release halted. ``releases`` are :class:`~.channel.Release` objects or their
    dicts (any order); ``reports`` the devices' reports. ``None``: no staged rollout."""
    ordered = sorted(releases, key=lambda r: int(_field(r, "release")))
    if not ordered:
        return None
    newest = ordered[-1]
    staged, halted_by = newest, None
    halts = _field(newest, "halts")
    if isinstance(halts, Mapping):
        halted = [r for r in ordered if _field(r, "release") == halts.get("release")]
        if not halted:
            return None
        staged, halted_by = halted[0], int(_field(newest, "release"))
    plan = _field(staged, "rollout")
    if plan is None:
        return None
    number = int(_field(staged, "release"))
    custom = {"model": _field(staged, "model"), "release": number, "rollout": plan}
    steps, _, _ = _checked(plan)
    step = current_step(plan, now)
    usable = [r for r in reports if "error" not in r and r.get("device")]
    outcomes = {str(r["device"]): device_outcome(r, number) for r in usable}
    failed = sorted(d for d, o in outcomes.items() if o == "failed")
    tried = sum(o is not None for o in outcomes.values())
    threshold = failure_threshold(plan)
    rate = len(failed) / tried if tried else None
    if halted_by is not None:
        verdict = "halted"
    elif rate is not None and rate > threshold:
        verdict = "halt"
    else:
        verdict = "complete" if step == len(steps) - 1 else "proceeding"
    return RolloutState(
        release=number,
        model=str(_field(staged, "model")),
        version=str(_field(staged, "version")),
        steps=[int(s) for s in steps],
        step=step,
        devices=len(usable),
        included=sum(included(d, custom, now) for d in outcomes),
        on=sum(1 for r in usable if r.get("release") == number),
        failed=failed,
        max_failure_rate=threshold,
        failure_rate=rate,
        verdict=verdict,
        halted_by=halted_by,
    )
