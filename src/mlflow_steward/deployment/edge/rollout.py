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

Nothing here reads a clock or a file: the caller passes ``now``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable, Mapping
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
