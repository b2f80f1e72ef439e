"""A staged rollout end to end: devices follow a release's plan, and a failing release is halted
and rolled back.

Four real agent processes (`steward edge agent`) on a folder channel, reporting to an uploads
folder: v1 on all; v2, staged at 50%,100%, fails on some inputs (its health check passes: its
input examples are fine). The two devices of the first step install it and report failing,
`steward edge rollout check` halts the rollout (v1 published again, marked as halting release
2), those two go back to v1 and the two others never move; the audit log has the publishes and
the halt. Before that, the controller's decision on reports written by hand (no agents)."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from mlflow_steward.deployment.edge.channel import Channel
from mlflow_steward.deployment.edge.governed import (
    check_rollout,
    governed_halt,
    governed_publish,
    read_rollout,
)
from mlflow_steward.deployment.edge.rollout import (
    device_bucket,
    device_outcome,
    parse_plan,
    rollout_state,
)
from mlflow_steward.errors import DeploymentError
from tests.edge_agent_helpers import BIN, AgentProcess, agents
from tests.edge_helpers import beacon_bundles, build_edge_registry, shared_edge_registry

#: Raises on rows with x1 > 1 (tests.edge_agent_helpers.ROWS has one), else predicts x0 <= 0.
FRAGILE_MODEL = textwrap.dedent(
    """
    import mlflow
    from mlflow.pyfunc import PythonModel


    class Fragile(PythonModel):
        def predict(self, context, model_input, params=None):
            if (model_input["x1"] > 1).any():
                raise ValueError("x1 out of the range this version was trained on")
            return (model_input["x0"] <= 0).astype(int).to_numpy()


    mlflow.models.set_model(Fragile())
    """
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The shared registry; bundles of v1 and v2."""
    root = tmp_path_factory.mktemp("edge-rollout")
    registry = shared_edge_registry(tmp_path_factory)
    return registry, beacon_bundles(registry, root)


@pytest.fixture(scope="module")
def fragile_world(tmp_path_factory):
    """A registry of its own whose beacon v2 is :data:`FRAGILE_MODEL` (registered: a bundle
    whose model is not its version's is refused at publish); bundles of v1 and v2."""
    root = tmp_path_factory.mktemp("edge-rollout-fragile")
    registry = build_edge_registry(root / "registry", v2_code=FRAGILE_MODEL)
    return registry, beacon_bundles(registry, root)


def steward(registry: Any, *args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "steward"), *map(str, args)],
        env=registry.env(),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=registry.root,
    )


def deploy_entries(registry: Any, channel: Path) -> list[Any]:
    """This channel's `deploy` audit entries, oldest first."""
    return [
        e
        for e in registry.session().audit.entries(model="beacon", action="deploy")
        if e.details.get("channel") == str(channel)
    ]


def devices_split(release: int, share: float) -> tuple[list[str], list[str]]:
    """Two device ids the step of ``share`` percent of ``release`` includes, two it does not."""
    custom = {"model": "beacon", "release": release}
    names = [f"dev-{i}" for i in range(100)]
    inside = [d for d in names if device_bucket(d, custom) < share][:2]
    outside = [d for d in names if device_bucket(d, custom) >= share][:2]
    return inside, outside


# -- the decision, from reports written by hand ---------------------------------------------------


def report(device: str, release: int, health: str = "healthy", **more: Any) -> dict[str, Any]:
    return {"device": device, "group": None, "release": release, "health": health, **more}


PLAN = {"steps": [50, 100], "step_wait": 600, "max_failure_rate": "0.25", "start": 1000}
RELEASES = [
    {"release": 1, "model": "beacon", "version": "1", "rollout": None, "halts": None},
    {"release": 2, "model": "beacon", "version": "2", "rollout": PLAN, "halts": None},
]


def test_device_outcome():
    assert device_outcome(report("a", 2), 2) == "healthy"
    assert device_outcome(report("a", 2, "failing"), 2) == "failed"
    assert device_outcome(report("a", 1), 2) is None
    unhealthy = {"release": 2, "reason": "unhealthy"}
    assert device_outcome(report("a", 1, update_failed=unhealthy), 2) == "failed"
    # A refused download is the channel's or the network's doing, not the release's.
    refused = {"release": 2, "reason": "LengthOrHashMismatchError"}
    assert device_outcome(report("a", 1, update_failed=refused), 2) is None


def test_the_failure_rate_is_over_the_devices_that_tried_the_release():
    reports = [report("a", 2), report("b", 2, "failing"), report("c", 1), report("d", 1)]
    state = rollout_state(RELEASES, reports, now=1001)
    assert state is not None
    assert (state.release, state.step, state.devices, state.on) == (2, 0, 4, 2)
    assert (state.failed, state.failure_rate, state.max_failure_rate) == (["b"], 0.5, 0.25)
    assert state.verdict == "halt"
    # At the threshold is not over it; no device tried it yet is no rate at all.
    reports = [report(d, 2) for d in "abc"] + [report("d", 2, "failing")]
    assert rollout_state(RELEASES, reports, 1001).verdict == "proceeding"
    state = rollout_state(RELEASES, [report("c", 1), {"device": "x", "error": "bad"}], 1001)
    assert (state.failure_rate, state.devices, state.verdict) == (None, 1, "proceeding")
    assert rollout_state(RELEASES, [report("a", 2)], 1000 + 600).verdict == "complete"
    # Halted: the newest release names it.
    halting = {**RELEASES[0], "release": 3, "halts": {"release": 2}}
    state = rollout_state([RELEASES[1], halting], [report("a", 3)], 1001)
    assert (state.release, state.verdict, state.halted_by) == (2, "halted", 3)
    # No plan on the newest release: nothing staged.
    assert rollout_state(RELEASES[:1], [report("a", 1)], 1001) is None
    assert rollout_state([], [], 1001) is None


class Raising:
    """A model that raises on a true input."""

    metadata = None

    def predict(self, data: Any, params: Any = None) -> int:
        if data:
            raise ValueError("no")
        return 1


def test_a_device_is_failing_when_most_of_its_last_predictions_raised():
    from mlflow_steward.deployment.edge.agent import HEALTH_WINDOW, _Watched

    watched = _Watched(Raising())
    assert watched.health() == {"health": "healthy", "recent": {"predictions": 0, "errors": 0}}
    for _ in range(4):  # too few to judge
        with pytest.raises(ValueError, match="no"):
            watched.predict(True)
    assert watched.health()["health"] == "healthy"
    with pytest.raises(ValueError, match="no"):
        watched.predict(True)
    assert watched.health() == {"health": "failing", "recent": {"predictions": 5, "errors": 5}}
    for _ in range(5):  # half is not more than half
        assert watched.predict(False) == 1
    assert watched.health()["health"] == "healthy"
    for _ in range(HEALTH_WINDOW):  # only the last predictions count
        watched.predict(False)
    assert watched.health() == {
        "health": "healthy",
        "recent": {"predictions": HEALTH_WINDOW, "errors": 0},
    }


def write_reports(uploads: Path, reports: list[dict[str, Any]]) -> None:
    (uploads / "devices").mkdir(parents=True, exist_ok=True)
    for r in reports:
        (uploads / "devices" / f"{r['device']}.json").write_text(json.dumps({"format": 1, **r}))


def test_check_halts_once_through_the_governed_path(world, tmp_path):
    registry, bundles = world
    channel, keys, uploads = tmp_path / "channel", tmp_path / "keys", tmp_path / "uploads"
    Channel(channel, keys).init()
    session = registry.session()
    plan = parse_plan("50%,100%", "10m", "25%")
    # A failing staged release with nothing before it cannot be halted.
    governed_publish(session, str(bundles["1"]), channel, keys, rollout=plan)
    write_reports(uploads, [report("a", 1, "failing"), report("b", 1)])
    with pytest.raises(DeploymentError, match="no earlier release to go back to"):
        check_rollout(session, channel, uploads, keys)
    assert [r.release for r in Channel(channel).releases()] == [1]  # nothing published

    governed_publish(session, str(bundles["2"]), channel, keys, rollout=plan)
    write_reports(uploads, [report("a", 2), report("b", 1)])
    state, halt, step = check_rollout(session, channel, uploads, keys)
    assert (state.release, state.verdict, halt, step) == (2, "proceeding", None, None)

    write_reports(uploads, [report("a", 2, "failing")])
    state, halt, _ = check_rollout(session, channel, uploads, keys)
    assert (state.verdict, state.failed, state.failure_rate) == ("halt", ["a"], 1.0)
    assert (halt.version, halt.release, halt.rollout) == ("1", 3, None)
    assert (halt.halts["release"], halt.halts["failure_rate"]) == (2, "1")
    # Checked again: halted already, nothing more published.
    state, again, _ = check_rollout(session, channel, uploads, keys)
    assert (state.verdict, state.halted_by, again) == ("halted", 3, None)
    # A second halt decided on the same reports (a concurrent check) publishes nothing.
    stale = rollout_state(
        [r.to_dict() for r in Channel(channel).releases() if r.release == 2],
        [report("a", 2, "failing")],
        time.time(),
    )
    assert stale.verdict == "halt"
    with pytest.raises(DeploymentError, match="no longer the channel's newest"):
        governed_halt(session, stale, channel, keys)
    assert [(r.version, r.release) for r in Channel(channel).releases()] == [("2", 2), ("1", 3)]
    halts = [e for e in deploy_entries(registry, channel) if e.details["operation"] == "halt"]
    assert [(e.version, e.outcome, e.details["halts"]["release"]) for e in halts] == [
        ("1", "applied", 2)
    ]


def staged_release(world: Any, tmp_path: Path, steps: str) -> tuple[Any, Path, Path, Path, Any]:
    """A folder channel with v1 published, then v2 staged at ``steps`` (10 minutes each,
    halting over 25% failing): ``(registry, channel, keys, uploads folder, v2's release)``."""
    registry, bundles = world
    channel, keys, uploads = tmp_path / "channel", tmp_path / "keys", tmp_path / "uploads"
    Channel(channel, keys).init()
    session = registry.session()
    governed_publish(session, str(bundles["1"]), channel, keys)
    plan = parse_plan(steps, "10m", "25%")
    staged = governed_publish(session, str(bundles["2"]), channel, keys, rollout=plan)
    return registry, channel, keys, uploads, staged


def test_check_records_each_step_once(world, tmp_path):
    registry, channel, keys, uploads, staged = staged_release(world, tmp_path, "10%,50%,100%")
    session = registry.session()
    start = staged.rollout["start"]
    write_reports(uploads, [report("a", 2), report("b", 1)])
    recorded = []
    for now in (start + 1, start + 601, start + 700, start + 1201, start + 5000):
        state, halt, step = check_rollout(session, channel, uploads, keys, now=now)
        assert halt is None
        recorded.append(step.seq if step is not None else None)
    # A new entry when step 2 and step 3 are first seen, none at the other checks.
    assert [seq is not None for seq in recorded] == [False, True, False, True, False]
    steps = [e for e in deploy_entries(registry, channel) if e.details["operation"] != "publish"]
    assert [(e.details["operation"], e.details["step"], e.details["share"], e.outcome)
            for e in steps] == [("rollout-step", 1, 50, "observed"),
                                ("rollout-step", 2, 100, "observed")]  # fmt: skip
    assert state.verdict == "complete"


# -- four agents ---------------------------------------------------------------------------------


def wait(what: str, predicate: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"never {what}")


@pytest.mark.slow
def test_a_failing_staged_release_is_halted_and_rolled_back(fragile_world, tmp_path):

    from mlflow_steward.deployment.edge.stats import read_devices
    from tests.edge_agent_helpers import ROWS

    registry, bundles = fragile_world
    channel, keys, uploads = tmp_path / "channel", tmp_path / "keys", tmp_path / "uploads"
    Channel(channel, keys).init()
    uploads.mkdir()
    trusted = channel / "metadata" / "1.root.json"
    session = registry.session()
    governed_publish(session, str(bundles["1"]), channel, keys)
    inside, outside = devices_split(release=2, share=50)
    made = []
    for device in inside + outside:
        state = tmp_path / device
        state.mkdir()
        (state / "device.json").write_text(json.dumps({"device_id": device}))
        made.append(AgentProcess(str(channel), trusted, state, interval="0.5s", uploads=uploads))
    with agents(*made):
        for agent in made:
            agent.wait_serving("1")
        expected_v1 = made[0].predict()[1]
        assert [agent.predict() for agent in made] == [(200, expected_v1, "1")] * 4

        # v2, staged: half the fleet at first, the rest after ten minutes.
        proc = steward(
            registry,
            "edge",
            "publish",
            bundles["2"],
            "--channel",
            channel,
            "--keys",
            keys,
            "--rollout",
            "50%,100%",
            "--step-wait",
            "10m",
            "--max-failure-rate",
            "25%",
        )
        assert proc.returncode == 0, proc.stderr
        assert "as release 2" in proc.stdout
        first, rest = made[:2], made[2:]
        for agent in first:
            agent.wait_serving("2")
        for agent in rest:
            status = agent.wait_for(
                "saw release 2 waiting", lambda s: (s.get("waiting") or {}).get("release") == 2
            )
            assert status["installed"]["version"] == "1"
            assert status["waiting"]["steps"] == [50, 100]
            assert status["waiting"]["step"] == 0

        # v2 fails in production on rows with x1 > 1 (ROWS has one); v1 answers them.
        assert any(row[1] > 1 for row in ROWS)
        for agent in first:
            for _ in range(6):
                code, answer, version = agent.predict()
                # MLflow's scoring answers a model that raises with a 400, as a bad request.
                assert (code, version) == (400, "2")
                assert "error while evaluating the model" in answer["message"]
            agent.wait_for("reported failing", lambda s: s.get("health") == "failing")
        for agent in rest:
            assert agent.predict() == (200, expected_v1, "1")

        def halting() -> Any:
            state = read_rollout(channel, uploads)
            found = state is not None and state.verdict == "halt" and len(state.failed) == 2
            return state if found else None

        state = wait("saw both failures in the reports", halting)
        assert (state.release, state.failed, state.failure_rate) == (2, sorted(inside), 1.0)
        status = steward(registry, "edge", "rollout", "status", "--channel", channel,
                         "--uploads", uploads)  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert "release 2 (beacon v2): step 1/2 (50%), 2 of 4 reporting devices" in status.stdout
        assert "failure rate 100% (halts over 25%): halt" in status.stdout

        check = steward(
            registry, "edge", "rollout", "check", "--channel", channel, "--uploads", uploads,
            "--keys", keys,
        )  # fmt: skip
        assert check.returncode == 0, check.stderr
        assert "halted: published beacon v1 again as release 3" in check.stdout

        # Those the rollout reached go back to v1; the others take release 3 as the v1 they run.
        for agent in made:
            agent.wait_for(
                "ran release 3",
                lambda s: s.get("installed") == {"model": "beacon", "version": "1", "release": 3},
            )
            assert agent.predict() == (200, expected_v1, "1")
            assert agent.status()["waiting"] is None
        for agent in first:
            installed = [e for e in agent.events() if e["event"] == "installed"]
            assert [(e["version"], e["release"]) for e in installed] == [
                ("1", 1),
                ("2", 2),
                ("1", 3),
            ]
            assert installed[-1]["previous"]["version"] == "2"
        for agent in rest:
            events = agent.events()
            installed = [e for e in events if e["event"] == "installed"]
            assert [(e["version"], e["release"]) for e in installed] == [("1", 1)]
            assert [e["release"] for e in events if e["event"] == "adopted"] == [3]

        def all_back() -> list[dict[str, Any]] | None:
            found = read_devices(str(uploads))
            ok = len(found) == 4 and all(
                (d.get("version"), d.get("release"), d.get("health")) == ("1", 3, "healthy")
                for d in found
            )
            return found if ok else None

        wait("reported v1 on every device", all_back)

    state = read_rollout(channel, uploads)
    assert (state.verdict, state.halted_by) == ("halted", 3)
    entries = deploy_entries(registry, channel)
    steps = [(e.details["operation"], e.version, e.outcome) for e in entries]
    assert steps == [("publish", "1", "applied"), ("publish", "2", "applied"),
                     ("halt", "1", "applied")]  # fmt: skip
    assert entries[1].details["rollout"]["steps"] == [50, 100]
    assert entries[2].details["halts"]["release"] == 2
    assert entries[2].details["halts"]["devices"] == sorted(inside)
    # The CLI's audit log shows them too.
    log = steward(registry, "audit", "log", "--model", "beacon", "--json")
    assert log.returncode == 0, log.stderr
    shown = [e for e in json.loads(log.stdout) if e["details"].get("channel") == str(channel)]
    assert [e["details"]["operation"] for e in shown] == ["publish", "publish", "halt"]


# -- rollout watch: the check on a schedule ------------------------------------------------------


def test_watch_halts_a_failing_rollout_once_survives_an_outage_and_stops_on_sigterm(
    world, tmp_path
):
    """`steward edge rollout watch --every 0.5s` as a real process, on devices' reports written
    as agents upload them: it logs each check, logs an unreachable channel as one line and goes
    on, halts the rollout once its reports say failing (one `halt` on the audit log, while the
    process keeps checking and reporting it halted), and stops cleanly on SIGTERM."""
    import signal

    registry, channel, keys, uploads, _ = staged_release(world, tmp_path, "50%,100%")
    write_reports(uploads, [report("a", 2), report("b", 1)])
    out, err = tmp_path / "watch.out", tmp_path / "watch.err"
    argv = [BIN / "steward", "edge", "rollout", "watch", "--channel", channel]
    argv += ["--uploads", uploads, "--keys", keys, "--every", "0.5s"]
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(
            [*map(str, argv)], env=registry.env(), cwd=registry.root, stdout=stdout, stderr=stderr
        )
    try:

        def lines(path: Path, text: str) -> list[str]:
            assert proc.poll() is None, (proc.returncode, out.read_text(), err.read_text())
            return [line for line in path.read_text().splitlines() if text in line]

        wait("a check logged", lambda: lines(out, "): proceeding"), timeout=90)
        # The channel gone for a while: each check says why in one line, the watch goes on.
        channel.rename(tmp_path / "away")
        failure = wait("a failed check logged", lambda: lines(err, "check failed:"))[0]
        assert str(channel) in failure
        assert "Traceback" not in err.read_text()
        (tmp_path / "away").rename(channel)
        seen = len(lines(out, "): proceeding"))
        wait("checked again", lambda: len(lines(out, "): proceeding")) > seen)

        # Device a (the rollout reached it) reports failing: halted once, watched on.
        write_reports(uploads, [report("a", 2, "failing"), report("b", 1)])
        halted = wait("halted", lambda: lines(out, "halted: published beacon v1 again"))
        assert halted[0].endswith("as release 3")
        wait("checked twice since", lambda: len(lines(out, "): halted by release 3")) >= 2)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, err.read_text()
    assert out.read_text().splitlines()[-1].endswith(" stopped")
    halts = [e for e in deploy_entries(registry, channel) if e.details["operation"] == "halt"]
    assert [(e.version, e.outcome, e.details["halts"]["release"]) for e in halts] == [
        ("1", "applied", 2)
    ]
    assert [(r.version, r.release) for r in Channel(channel).releases()][-1] == ("1", 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--every", "soon"], "'soon' is not a duration"),
        (["--every", "0s"], "the interval must be more than 0"),
        (["--every", "1s", "--max-runs", "0"], "--max-runs"),
        (["--every", "1s", "--uploads", "ftp://host/x"], "scheme ftp:// is not supported"),
    ],
)
def test_watch_refuses_bad_options_in_one_line(world, tmp_path, args, message):
    registry, _ = world
    channel = tmp_path / "channel"
    Channel(channel, tmp_path / "keys").init()
    uploads = ["--uploads", str(tmp_path / "uploads")] if "--uploads" not in args else []
    proc = steward(registry, "edge", "rollout", "watch", "--channel", channel, *uploads, *args)
    assert proc.returncode == 2, proc.stdout
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_watch_with_max_runs_exits_with_the_last_checks_outcome(world, tmp_path):
    """--max-runs 2 on a channel that is not there: two failed checks logged, exit 1; on a
    channel with no staged rollout: 0, each check logged."""
    registry, _ = world
    channel, uploads = tmp_path / "channel", tmp_path / "uploads"
    argv = ["edge", "rollout", "watch", "--channel", channel, "--uploads", uploads]
    argv += ["--every", "0.1s", "--max-runs", "2"]
    proc = steward(registry, *argv)
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.count("check failed:") == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    Channel(channel, tmp_path / "keys").init()
    uploads.mkdir()
    proc = steward(registry, *argv)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(f"no staged rollout on {channel}") == 2
