"""Staged rollouts: the plan `steward edge publish --rollout` signs with a release, and the pure
function a device asks, `included(device_id, release_custom, now)`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_steward.deployment.edge.channel import Channel
from mlflow_steward.deployment.edge.reader import ChannelReader
from mlflow_steward.deployment.edge.rollout import (
    RolloutPlanError,
    current_step,
    device_bucket,
    failure_threshold,
    included,
    parse_plan,
    release_for,
)
from tests.edge_helpers import shared_edge_registry

BIN = Path(sys.executable).parent
START = 1_765_000_000.0
PLAN = {"steps": [10, 50, 100], "step_wait": 600, "max_failure_rate": "0.05", "start": START}


def release(n: int = 7, plan: dict | None = PLAN, model: str = "beacon") -> dict:
    """A target's ``custom``, as the channel writes it."""
    steward = {"model": model, "version": "2", "release": n, "digest": "sha256:x"}
    if plan is not None:
        steward["rollout"] = plan
    return {"steward": steward}


DEVICES = [f"device-{i}" for i in range(4000)]


def share(custom: dict, now: float) -> float:
    return sum(included(d, custom, now) for d in DEVICES) / len(DEVICES)


# -- parse_plan ----------------------------------------------------------------------------------


def test_parse_plan():
    assert parse_plan("10%,50%,100%", "10m", "5%") == {
        "steps": [10, 50, 100],
        "step_wait": 600,
        "max_failure_rate": "0.05",
    }
    assert parse_plan(" 1 , 100 ", "1h", "0.2")["steps"] == [1, 100]
    plan = parse_plan("100%", 30, "33.3%")
    assert (plan["step_wait"], failure_threshold(plan)) == (30, pytest.approx(0.333))
    assert failure_threshold(parse_plan("100%", 30, "0%")) == 0.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("10%,x,100%", "10m", "5%"), "'x' is not a percentage"),
        (("0%,100%", "10m", "5%"), "above 0% and at most 100%"),
        (("10%,150%", "10m", "5%"), "above 0% and at most 100%"),
        (("50%,10%,100%", "10m", "5%"), "the steps must grow"),
        (("10%,50%", "10m", "5%"), "the last step must be 100%"),
        (("10%,100%", "soon", "5%"), "--step-wait: 'soon' is not a duration"),
        (("10%,100%", "0s", "5%"), "--step-wait must be at least 1s"),
        (("12.5%,100%", "10m", "5%"), "use whole percentages"),
        (("10%,100%", "10m", "150%"), "--max-failure-rate '150%'"),
        (("10%,100%", "10m", "2"), "--max-failure-rate '2'"),
        (("10%,nan%,100%", "10m", "5%"), "'nan%' is not a percentage"),
    ],
)
def test_parse_plan_errors(args, message):
    with pytest.raises(RolloutPlanError) as caught:
        parse_plan(*args)
    assert message in str(caught.value)


# -- included ------------------------------------------------------------------------------------


def test_a_release_without_a_plan_includes_every_device():
    assert all(included(d, release(plan=None), START) for d in DEVICES[:100])


def test_each_step_includes_its_share_of_the_devices():
    custom = release()
    assert share(custom, START - 3600) == pytest.approx(0.10, abs=0.02)  # a clock behind
    assert share(custom, START) == pytest.approx(0.10, abs=0.02)
    assert share(custom, START + 599) == pytest.approx(0.10, abs=0.02)
    assert share(custom, START + 600) == pytest.approx(0.50, abs=0.03)
    assert share(custom, START + 1200) == 1.0
    assert share(custom, START + 10**9) == 1.0


def test_each_release_draws_its_own_sample():
    first = {d for d in DEVICES if included(d, release(1), START)}
    second = {d for d in DEVICES if included(d, release(2), START)}
    other_model = {d for d in DEVICES if included(d, release(1, model="other"), START)}
    # Independent 10% samples overlap by about 1% of the fleet, not 10%.
    assert len(first & second) < len(first) / 3
    assert len(first & other_model) < len(first) / 3


def test_the_custom_the_steward_part_and_release_dicts_are_the_same_question():
    custom = release()
    as_release = {**custom["steward"], "path": "beacon/2.tar.gz", "length": 1, "sha256": "y"}
    for d in DEVICES[:200]:
        expected = included(d, custom, START)
        assert included(d, custom["steward"], START) is expected
        assert included(d, as_release, START) is expected


def test_current_step():
    assert [current_step(PLAN, START + t) for t in (-1, 0, 599, 600, 1199, 1200, 10**6)] == [
        0,
        0,
        0,
        1,
        1,
        2,
        2,
    ]


@pytest.mark.parametrize(
    "plan",
    [
        {"steps": [10, 100], "step_wait": 600},  # no start
        {"steps": [], "step_wait": 600, "start": START},
        {"steps": [10, 100], "step_wait": 0, "start": START},
        {"steps": ["x"], "step_wait": 600, "start": START},
        {"steps": [10, 100], "step_wait": float("inf"), "start": START},
        "10%",
    ],
)
def test_a_malformed_plan_is_an_error_not_a_guess(plan):
    with pytest.raises(RolloutPlanError, match="rollout plan is malformed"):
        included("device-1", release(plan=plan), START)


steps_strategy = st.lists(
    st.floats(min_value=0.5, max_value=99.5, allow_nan=False), min_size=0, max_size=4, unique=True
).map(lambda xs: [*sorted(xs), 100.0])
plans = st.builds(
    lambda steps, wait, start: {
        "steps": steps,
        "step_wait": wait,
        "max_failure_rate": 0.05,
        "start": start,
    },
    steps_strategy,
    st.floats(min_value=1, max_value=10 * 86400),
    st.floats(min_value=0, max_value=2e9),
)
device_ids = st.text(min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    device=device_ids,
    plan=plans,
    n=st.integers(min_value=1, max_value=10**6),
    t1=st.floats(min_value=-1e6, max_value=1e7),
    dt=st.floats(min_value=0, max_value=1e7),
)
def test_included_is_deterministic_and_never_takes_a_device_back(device, plan, n, t1, dt):
    custom = release(n, plan)
    now = plan["start"] + t1
    first = included(device, custom, now)
    assert included(device, custom, now) is first
    if first:  # later steps only add devices
        assert included(device, custom, now + dt)
    # At the last step every device is in.
    assert included(device, custom, plan["start"] + plan["step_wait"] * len(plan["steps"]))
    assert 0 <= device_bucket(device, custom) < 100


@settings(max_examples=200, deadline=None)
@given(device=device_ids, plan=plans, now=st.floats(min_value=0, max_value=3e9))
def test_release_for_is_the_newest_release_that_includes_the_device(device, plan, now):
    releases = [release(1, None), release(2, plan), release(3, plan)]
    chosen = release_for(device, [r["steward"] for r in releases], now)
    expected = next(r["steward"] for r in reversed(releases) if included(device, r["steward"], now))
    assert chosen == expected
    assert release_for(device, [], now) is None


# -- publishing a staged release ------------------------------------------------------------------


def steward(registry, *args):
    return subprocess.run(
        [str(BIN / "steward"), *map(str, args)],
        env=registry.env(),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=registry.root,
    )


def test_publish_signs_the_plan_with_the_release(tmp_path_factory, tmp_path):
    registry = shared_edge_registry(tmp_path_factory)
    channel, keys = tmp_path / "channel", tmp_path / "keys"
    Channel(channel, keys).init()
    base = ["--channel", channel, "--keys", keys]
    bad = steward(registry, "edge", "publish", "models:/beacon/1", *base, "--rollout", "10%,50%")
    assert bad.returncode == 2
    assert "--rollout needs --step-wait and --max-failure-rate" in bad.stderr
    bad = steward(
        registry,
        "edge",
        "publish",
        "models:/beacon/1",
        *base,
        "--rollout",
        "50%,10%",
        "--step-wait",
        "10m",
        "--max-failure-rate",
        "5%",
    )
    assert bad.returncode == 1
    assert "the steps must grow" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert Channel(channel).releases() == []  # nothing published

    assert steward(registry, "edge", "publish", "models:/beacon/1", *base).returncode == 0
    proc = steward(
        registry,
        "edge",
        "publish",
        "models:/beacon/2",
        *base,
        "--rollout",
        "10%,50%,100%",
        "--step-wait",
        "10m",
        "--max-failure-rate",
        "5%",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    published = json.loads(proc.stdout)
    plan = published["rollout"]
    assert {k: v for k, v in plan.items() if k != "start"} == {
        "steps": [10, 50, 100],
        "step_wait": 600,
        "max_failure_rate": "0.05",
    }
    # A device reads the plan from the verified (signed) targets metadata.
    latest = ChannelReader(str(channel), channel / "metadata/1.root.json", str(tmp_path)).latest()
    assert (latest.version, latest.rollout) == ("2", plan)
    shown = json.loads(steward(registry, "edge", "channel", "show", *base[:2], "--json").stdout)
    assert [(r["version"], r["rollout"] is not None) for r in shown] == [("1", False), ("2", True)]
    # Devices outside the first step stay on v1; at the last step all move to v2.
    start = plan["start"]
    chosen = [release_for(d, shown, start)["version"] for d in DEVICES[:1000]]
    assert 0.05 < chosen.count("2") / len(chosen) < 0.15
    assert {release_for(d, shown, start + 1200)["version"] for d in DEVICES[:200]} == {"2"}
    # Policies saw the plan.
    entry = [
        e
        for e in registry.session().audit.entries()
        if e.action == "deploy" and e.details.get("rollout")
    ][-1]
    assert entry.details["rollout"]["steps"] == [10, 50, 100]
