"""The edge agent as real processes (`steward edge agent`) on 127.0.0.1, reading folder channels
served by a real `python -m http.server`: releases reach every agent, predictions are the
model's own, an update switches with no failed request, each TUF attack and an unhealthy bundle
is refused while the installed version keeps serving, a SIGKILL at any step of an update
restarts into a working install, and an unreachable channel changes nothing until it is back.

Scenarios that wait on agents run side by side (one thread each, one agent process each), so
the module costs a few agent start-ups rather than one per scenario."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from mlflow_steward.deployment.edge.channel import Channel
from mlflow_steward.deployment.onprem.ports import free_port
from mlflow_steward.errors import DeploymentError
from tests.edge_agent_helpers import (
    BIN,
    ROWS,
    AgentProcess,
    agents,
    assert_statistics_arrive,
    assert_switched_once,
    own_predictions,
    rows_sent,
    sign_targets_with,
    split_payload,
    staged,
    stored_bundle,
    switch_under_load,
    utc_now,
    with_broken_example,
)
from tests.edge_helpers import COLUMNS, beacon_bundles, shared_edge_registry, static_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Bundles of v1 and v2, an unhealthy bundle of v2, and each version's own predictions on
    ROWS (its model loaded from the bundle, in this process)."""
    root = tmp_path_factory.mktemp("edge-agent")
    registry = shared_edge_registry(tmp_path_factory)
    bundles = beacon_bundles(registry, root)
    expected = own_predictions(bundles, root)
    bundles["unhealthy"] = with_broken_example(bundles["2"], root / "beacon-2-unhealthy.tar.gz")
    return root, bundles, expected


def new_channel(folder: Path, bundle: Path | None = None, **init: Any) -> tuple[Path, Path]:
    """A channel in ``folder`` (keys beside it), with ``bundle`` published when given."""
    keys = folder.with_name(folder.name + "-keys")
    Channel(folder, keys).init(**init)
    if bundle is not None:
        Channel(folder, keys).publish(bundle)
    return keys, folder / "metadata" / "1.root.json"


def test_two_agents_install_serve_and_switch_without_a_failed_request(world, tmp_path):
    _root, bundles, expected = world
    channel = tmp_path / "channel"
    keys, trusted = new_channel(channel)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    with (
        static_server(channel) as url,
        agents(
            AgentProcess(url, trusted, tmp_path / "north", group="north", uploads=uploads),
            AgentProcess(url, trusted, tmp_path / "south", group="south", uploads=uploads),
        ) as both,
    ):
        # Nothing published yet: not ready, and saying why.
        for agent in both:
            status = agent.wait_for("checked", lambda s: s.get("last_check") is not None)
            assert status["last_check"]["result"] == "empty"
            assert status["installed"] is None
            assert requests.get(f"{agent.url}/ping", timeout=10).status_code == 503
            assert agent.predict()[0] == 503

        Channel(channel, keys).publish(bundles["1"])
        for agent in both:
            status = agent.wait_serving("1")
            assert requests.get(f"{agent.url}/ping", timeout=10).status_code == 200
            assert status["installed"] == {"model": "beacon", "version": "1", "release": 1}
            assert status["group"] == agent.group
            assert status["device_id"]
            assert status["channel"] == url
            assert agent.predict() == (200, expected["1"], "1")
            # Every request layout of MLflow's scoring protocol, as `mlflow models serve` takes.
            records = [dict(zip(COLUMNS, row, strict=True)) for row in ROWS]
            columns = {c: [row[i] for row in ROWS] for i, c in enumerate(COLUMNS)}
            for payload in (
                {"dataframe_records": records},
                {"instances": records},
                {"inputs": columns},
            ):
                assert agent.predict(payload) == (200, expected["1"], "1"), payload
            csv = ",".join(COLUMNS) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in ROWS)
            assert agent.predict(data=csv, headers={"Content-Type": "text/csv"}) == (
                200,
                expected["1"],
                "1",
            )
            code, error, _ = agent.predict({"dataframe_split": {"columns": ["a"], "data": [[1]]}})
            assert code == 400
            assert error["error_code"] == "INVALID_PARAMETER_VALUE"
            assert "x0" in error["message"]
        assert both[0].status()["device_id"] != both[1].status()["device_id"]

        # v2 published while clients keep both agents busy: every request answered, by v1
        # until the switch and by v2 after it, each with its own predictions.
        answers = switch_under_load(both, lambda: Channel(channel, keys).publish(bundles["2"]))
        assert_switched_once(answers, expected)

        # The statistics: every row each agent answered (the first part's five requests of
        # four rows, then the clients'), under the version that answered it, uploaded once.
        before = {a.group: 5 * len(ROWS) for a in both}
        assert_statistics_arrive(str(uploads), rows_sent(answers, before))

        events = [e["event"] for e in both[0].events()]
        assert events[:1] == ["started"]
        assert events.count("installed") == 2
        # SIGTERM: a clean stop, recorded.
        assert both[0].stop() == 0
        assert both[0].events()[-1]["event"] == "stopped"
        assert sorted(p.name for p in (tmp_path / "north" / "releases").iterdir()) == [
            "1-v1",
            "2-v2",
        ]


# -- attacks: each in its own channel and agent, side by side -------------------------------------


def _publish_staged(channel: Path, keys: Path, bundle: Path, change: Callable[[Path], None]):
    with staged(channel) as stage:
        Channel(stage, keys).publish(bundle)
        change(stage)


def _one_byte(ctx: dict[str, Any]) -> None:
    def flip(stage: Path) -> None:
        data = bytearray(stored_bundle(stage, "2").read_bytes())
        data[len(data) // 2] ^= 1
        stored_bundle(stage, "2").write_bytes(bytes(data))

    _publish_staged(ctx["channel"], ctx["keys"], ctx["bundles"]["2"], flip)


def _endless_data(ctx: dict[str, Any]) -> None:
    def grow(stage: Path) -> None:
        with open(stored_bundle(stage, "2"), "ab") as f:
            f.write(b"\0" * 4096)

    _publish_staged(ctx["channel"], ctx["keys"], ctx["bundles"]["2"], grow)


def _foreign_key(ctx: dict[str, Any]) -> None:
    other = ctx["tmp"] / "other-channel"
    new_channel(other, ctx["bundles"]["2"])

    def theirs(stage: Path) -> None:
        shutil.copy(other / "metadata" / "2.targets.json", stage / "metadata" / "3.targets.json")

    _publish_staged(ctx["channel"], ctx["keys"], ctx["bundles"]["2"], theirs)


def _rotated_out_key(ctx: dict[str, Any]) -> None:
    since = utc_now()
    Channel(ctx["channel"], ctx["keys"]).rotate("targets")
    ctx["agent"].wait_checked_since(since)  # the agent follows the rotation

    def retired(stage: Path) -> None:
        sign_targets_with(stage, ctx["keys"] / "retired" / "targets-1.pem")

    _publish_staged(ctx["channel"], ctx["keys"], ctx["bundles"]["2"], retired)


def _rollback(ctx: dict[str, Any]) -> None:
    old_timestamp = (ctx["channel"] / "metadata" / "timestamp.json").read_bytes()
    Channel(ctx["channel"], ctx["keys"]).publish(ctx["bundles"]["2"])
    ctx["agent"].wait_serving("2")
    with staged(ctx["channel"]) as stage:  # the older channel, replayed
        (stage / "metadata" / "timestamp.json").write_bytes(old_timestamp)


def _mix_and_match(ctx: dict[str, Any]) -> None:
    def old_snapshot(stage: Path) -> None:
        meta = stage / "metadata"
        (meta / "3.snapshot.json").write_bytes((meta / "2.snapshot.json").read_bytes())

    _publish_staged(ctx["channel"], ctx["keys"], ctx["bundles"]["2"], old_snapshot)


def _freeze(ctx: dict[str, Any]) -> None:
    # The last timestamp signed is valid for 3 s; then nobody signs again.
    settings_file = ctx["channel"] / "steward-channel.json"
    settings = json.loads(settings_file.read_text())
    settings["expiry"]["timestamp"] = 3
    settings_file.write_text(json.dumps(settings))
    Channel(ctx["channel"], ctx["keys"]).refresh()


def _unhealthy(ctx: dict[str, Any]) -> None:
    Channel(ctx["channel"], ctx["keys"]).publish(ctx["bundles"]["unhealthy"])


ATTACKS: dict[str, tuple[Callable[[dict[str, Any]], None], str, str]] = {
    # name: (attack, python-tuf's reason the agent reports, the version it keeps serving)
    "one-byte": (_one_byte, "LengthOrHashMismatchError", "1"),
    "endless-data": (_endless_data, "DownloadLengthMismatchError", "1"),
    "foreign-key": (_foreign_key, "UnsignedMetadataError", "1"),
    "rotated-out-key": (_rotated_out_key, "UnsignedMetadataError", "1"),
    "rollback": (_rollback, "BadVersionNumberError", "2"),
    "mix-and-match": (_mix_and_match, "LengthOrHashMismatchError", "1"),
    "freeze": (_freeze, "ExpiredMetadataError", "1"),
    "unhealthy-bundle": (_unhealthy, "unhealthy", "1"),
}


def _attack_scenario(name: str, root: Path, url: str, bundles: dict[str, Path]) -> dict:
    attack, _, _ = ATTACKS[name]
    channel = root / "served" / name
    keys, trusted = new_channel(channel, bundles["1"])
    agent = AgentProcess(f"{url}/{name}", trusted, root / f"device-{name}")
    ctx = {"channel": channel, "keys": keys, "bundles": bundles, "tmp": root, "agent": agent}
    with agents(agent):
        agent.wait_serving("1")
        attack(ctx)
        status = agent.wait_for("refused", lambda s: s.get("last_refusal") is not None)
        since = utc_now()
        # A few more checks: still refused, still serving, not retrying in a tight loop.
        agent.wait_checked_since(since)
        time.sleep(2)
        return {
            "refused": status,
            "after": agent.status(),
            "prediction": agent.predict(),
            "ping": requests.get(f"{agent.url}/ping", timeout=10).status_code,
            "events": agent.events(),
        }


@pytest.fixture(scope="module")
def attacked(world, tmp_path_factory):
    _root, bundles, expected = world
    root = tmp_path_factory.mktemp("edge-attacks")
    (root / "served").mkdir()
    with static_server(root / "served") as url, ThreadPoolExecutor(len(ATTACKS)) as pool:
        futures = {n: pool.submit(_attack_scenario, n, root, url, bundles) for n in ATTACKS}
        results = {}
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except Exception as exc:  # reported by the attack's own test
                results[name] = exc
    return results, expected


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack_is_refused_and_the_installed_version_keeps_serving(attacked, attack):
    results, expected = attacked
    result = results[attack]
    if isinstance(result, Exception):
        raise result
    _, reason, serving = ATTACKS[attack]
    refusal = result["refused"]["last_refusal"]
    assert refusal["reason"] == reason, refusal
    assert refusal["error"]
    after = result["after"]
    assert after["installed"]["version"] == serving
    assert after["last_refusal"]["reason"] == reason
    assert result["prediction"] == (200, expected[serving], serving)
    assert result["ping"] == 200
    refusals = [e for e in result["events"] if e["event"] == "refused"]
    assert refusals
    assert all(e["reason"] == reason for e in refusals)
    assert not [e for e in result["events"] if e["event"] == "installed" and e["release"] > 2]
    if attack == "unhealthy-bundle":
        # Not committed, why said, and the same bundle not tried again on the next checks.
        assert "fails on its input example" in refusal["error"]
        assert after["last_check"]["result"] == "skipped"
        assert [(f["release"]["release"], f["attempts"]) for f in after["failed_releases"]] == [
            (2, 1)
        ]
        assert after["failed_releases"][0]["final"] is True


# -- SIGKILL at each step of an update -----------------------------------------------------------


def _release_folders(state: Path) -> list[str]:
    return sorted(p.name for p in (state / "releases").iterdir())


def _kill_scenario(step: str, root: Path, url: str, slow_url: str, bundles) -> dict:
    channel = root / ("slow" if step == "download" else "served") / step
    keys, trusted = new_channel(channel, bundles["1"])
    state = root / f"device-{step}"
    agent = AgentProcess(f"{slow_url if step == 'download' else url}/{step}", trusted, state)
    seen: dict[str, Any] = {}
    try:
        agent.start(pause=None if step == "download" else f"{step}:2")
        agent.wait_serving("1")
        Channel(channel, keys).publish(bundles["2"])
        if step == "download":
            notes = root / "slow.downloads"
            target = "/" + stored_bundle(channel, "2").relative_to(root / "slow").as_posix()
            agent.wait_for(
                "started downloading v2",
                lambda s: notes.is_file() and target in notes.read_text().splitlines(),
            )
        else:
            agent.wait_file(state / f"paused-{step}")
        agent.kill()
        seen["left"] = {
            "folders": _release_folders(state),
            "current": os.readlink(state / "current"),
            "links": sorted(p.name for p in state.glob(".current.*")),
            "status_release": json.loads((state / "status.json").read_text())["installed"][
                "release"
            ]["release"],
        }
        restarted = len(agent.events())
        agent.start()
        agent.wait_for("served", lambda s: s.get("installed") is not None)
        seen["first_prediction"] = agent.predict()
        agent.wait_serving("2")
        seen["prediction"] = agent.predict()
        # /status shows v2 as soon as the reference is swapped; its event follows at once.
        deadline = time.monotonic() + 10
        while step != "commit" and time.monotonic() < deadline:
            if any(e["event"] == "installed" for e in agent.events()[restarted:]):
                break
            time.sleep(0.05)
        seen["events"] = agent.events()[restarted:]
        seen["folders"] = _release_folders(state)
        seen["links"] = sorted(p.name for p in state.glob(".current.*"))
        seen["paused"] = sorted(p.name for p in state.glob("paused-*"))
    finally:
        agent.stop()
    return seen


KILL_STEPS = ("download", "install", "swap", "commit")


@pytest.fixture(scope="module")
def killed(world, tmp_path_factory):
    _root, bundles, expected = world
    root = tmp_path_factory.mktemp("edge-kills")
    (root / "served").mkdir()
    (root / "slow").mkdir()
    with (
        static_server(root / "served") as url,
        static_server(root / "slow", module="tests.edge_agent_helpers") as slow_url,
        ThreadPoolExecutor(len(KILL_STEPS)) as pool,
    ):
        futures = {
            s: pool.submit(_kill_scenario, s, root, url, slow_url, bundles) for s in KILL_STEPS
        }
        results = {}
        for step, future in futures.items():
            try:
                results[step] = future.result()
            except Exception as exc:
                results[step] = exc
    return results, expected


@pytest.mark.parametrize("step", KILL_STEPS)
def test_sigkill_during_an_update_restarts_into_a_working_install(killed, step):
    results, expected = killed
    seen = results[step]
    if isinstance(seen, Exception):
        raise seen
    left = seen["left"]
    # Where the kill landed.
    if step == "download":
        assert left["folders"] == ["1-v1"]
        assert left["current"] == "releases/1-v1"
    elif step == "install":
        assert left["folders"] == ["1-v1", "2-v2"]
        assert left["current"] == "releases/1-v1"
    elif step == "swap":
        assert left["links"]
        assert left["current"] == "releases/1-v1"
    else:  # commit: switched, the status not yet written
        assert left["current"] == "releases/2-v2"
        assert left["status_release"] == 1
    # The restart serves a working install at once: v1, or v2 when the switch had happened
    # (from the events: by the time a client asks, the update may have been made).
    first = "2" if step == "commit" else "1"
    code, predictions, version = seen["first_prediction"]
    assert code == 200
    assert predictions == expected[version]
    serving = [e for e in seen["events"] if e["event"] == "serving"]
    assert [e["version"] for e in serving] == [first]
    installed = [e for e in seen["events"] if e["event"] == "installed"]
    assert [e["version"] for e in installed] == ([] if step == "commit" else ["2"])
    if installed:  # v1 served first, v2 installed after
        assert seen["events"].index(serving[0]) < seen["events"].index(installed[0])
    # ... then completes the update, and nothing of the killed attempt is left.
    assert seen["prediction"] == (200, expected["2"], "2")
    assert seen["links"] == []
    assert seen["paused"] == []
    assert seen["folders"] in (["2-v2"], ["1-v1", "2-v2"])
    if step in ("install", "swap"):
        assert [e["event"] for e in seen["events"]].count("interrupted") == 1


# -- the channel unreachable ---------------------------------------------------------------------


def test_unreachable_channel_keeps_serving_and_updates_when_back(world, tmp_path):
    _root, bundles, expected = world
    channel = tmp_path / "channel"
    keys, trusted = new_channel(channel, bundles["1"])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with agents(AgentProcess(url, trusted, tmp_path / "device")) as (agent,):
        with static_server(channel, port=port):
            agent.wait_serving("1")
            # A second agent on the same state folder is refused, in one line.
            second = subprocess.run(
                [
                    str(BIN / "steward"),
                    "edge",
                    "agent",
                    "--channel",
                    url,
                    "--trusted-root",
                    str(trusted),
                    "--state-dir",
                    str(tmp_path / "device"),
                    "--port",
                    str(free_port()),
                    "--no-statistics",
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert second.returncode != 0
            assert "another agent is running on" in second.stderr
            assert "Traceback" not in second.stderr
        # The server is gone: the agent keeps serving and says so.
        status = agent.wait_for(
            "found the channel unreachable",
            lambda s: (s.get("last_check") or {}).get("result") == "unreachable",
        )
        assert url in status["last_check"]["error"]
        assert agent.predict() == (200, expected["1"], "1")
        Channel(channel, keys).publish(bundles["2"])
        time.sleep(2)
        assert agent.predict() == (200, expected["1"], "1")
        assert agent.status()["last_check"]["result"] == "unreachable"
        # Back on the same address: the update arrives.
        with static_server(channel, port=port):
            agent.wait_serving("2")
            assert agent.predict() == (200, expected["2"], "2")
        results = [e.get("result") for e in agent.events() if e["event"] == "check"]
        assert "unreachable" in results


def test_bad_options_are_one_line_errors(tmp_path):
    not_root = tmp_path / "timestamp.json"
    not_root.write_text("{}")
    cases = [
        (["--trusted-root", str(not_root)], "is not TUF metadata"),
        (["--interval", "soon"], "'soon' is not a duration"),
        (["--jitter", "1.5"], "--jitter"),
    ]
    for extra, message in cases:
        argv = {
            "--channel": str(tmp_path / "channel"),
            "--trusted-root": str(not_root),
            "--state-dir": str(tmp_path / "state"),
            "--port": "1",
            "--no-statistics": None,
        }
        for key, value in zip(extra[::2], extra[1::2], strict=True):
            argv[key] = value
        args = [str(BIN / "steward"), "edge", "agent"]
        for key, value in argv.items():
            args += [key] if value is None else [key, value]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0, extra
        assert message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


# -- in process: the statistics hook, and a release the agent died installing ---------------------


class RecordingStatistics:
    """What the agent tells a statistics object (EdgeStatistics, with its own tests), and one
    that fails at every call."""

    def __init__(self, fail: bool = False) -> None:
        self.observed: list[tuple[list[str], int, str]] = []
        self.reports: list[dict[str, Any]] = []
        self.ticks = 0
        self.fail = fail

    def report(self, status: dict[str, Any]) -> None:
        if self.fail:
            raise RuntimeError("a broken statistics plugin")
        self.reports.append(status)

    def observe(self, frame, version: str) -> None:
        if self.fail:
            raise RuntimeError("a broken statistics plugin")
        self.observed.append((list(frame.columns), len(frame), version))

    def tick(self) -> None:
        self.ticks += 1
        if self.fail:
            raise RuntimeError("a broken statistics plugin")


def _in_process_agent(tmp_path: Path, channel: Path, trusted: Path, **options: Any):
    from mlflow_steward.deployment.edge.agent import Agent

    return Agent(
        channel=str(channel),
        trusted_root=trusted,
        state_dir=tmp_path / "device",
        port=free_port(),
        interval=0.2,
        **options,
    )


@pytest.mark.parametrize("fail", [False, True])
def test_statistics_see_each_decoded_input_and_never_fail_a_request(world, tmp_path, fail):
    _root, bundles, expected = world
    channel = tmp_path / "channel"
    _keys, trusted = new_channel(channel, bundles["1"])
    statistics = RecordingStatistics(fail=fail)
    agent = _in_process_agent(tmp_path, channel, trusted, statistics=statistics)
    agent.start()
    loop = threading.Thread(target=agent.loop)
    loop.start()
    try:
        deadline = time.monotonic() + 60
        while agent.server.serving is None and time.monotonic() < deadline:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{agent.port}/invocations"
        records = [dict(zip(COLUMNS, row, strict=True)) for row in ROWS]
        for payload in (split_payload(), {"dataframe_records": records[:2]}):
            resp = requests.post(url, json=payload, timeout=30)
            assert resp.status_code == 200
        bad = requests.post(url, json={"dataframe_split": {"columns": ["a"], "data": [[1]]}})
        assert bad.status_code == 400
        time.sleep(0.5)
    finally:
        agent.stopping.set()
        loop.join(30)
        agent.stop()
    assert resp.json()["predictions"] == expected["1"][:2]
    assert statistics.ticks >= 2
    if fail:
        assert statistics.observed == []
        assert agent.status()["statistics_errors"] >= 3  # observe, tick and report, at least
    else:
        # Each successful prediction once, as the frame the model saw; not the refused one.
        assert statistics.observed == [(COLUMNS, len(ROWS), "beacon/1"), (COLUMNS, 2, "beacon/1")]
        assert agent.status()["statistics"] == {}  # this one has no state() to show
        assert statistics.reports[0]["health"] == "no model"
        assert statistics.reports[-1]["version"] == "1"
        assert statistics.reports[-1]["health"] == "healthy"


def test_statistics_absent_or_broken_is_a_message_not_an_error(
    world, tmp_path, capsys, monkeypatch
):
    import sys
    import types

    from mlflow_steward.deployment.edge.agent import STATISTICS_MODULE, load_statistics

    channel = tmp_path / "channel"
    _keys, trusted = new_channel(channel)
    agent = _in_process_agent(tmp_path, channel, trusted)
    monkeypatch.setitem(sys.modules, STATISTICS_MODULE, None)  # a steward without them
    assert load_statistics(agent) is None
    assert "statistics: not available in this version of steward" in capsys.readouterr().out

    def broken(*args: Any, **options: Any) -> None:
        raise OSError("the spool folder is read-only")

    monkeypatch.setitem(
        sys.modules, STATISTICS_MODULE, types.SimpleNamespace(EdgeStatistics=broken)
    )
    assert load_statistics(agent) is None
    assert (
        "statistics: cannot start (OSError: the spool folder is read-only); serving without them"
        in capsys.readouterr().out
    )

    def refusing(*args: Any, **options: Any) -> None:
        raise ValueError("window_seconds 0.5: a whole number of seconds")

    monkeypatch.setitem(
        sys.modules, STATISTICS_MODULE, types.SimpleNamespace(EdgeStatistics=refusing)
    )
    with pytest.raises(DeploymentError, match=r"^statistics: window_seconds 0.5: a whole"):
        load_statistics(agent)


def test_a_release_the_agent_died_installing_twice_is_not_tried_again(world, tmp_path):
    _root, bundles, _expected = world
    channel = tmp_path / "channel"
    _keys, trusted = new_channel(channel, bundles["1"])
    release = Channel(channel, ".").releases()[-1]
    installer_status = tmp_path / "device" / "status.json"
    installer_status.parent.mkdir(parents=True)
    for deaths, tried in ((0, True), (1, False)):
        installer_status.write_text(
            json.dumps({"attempting": {"release": release.to_dict(), "deaths": deaths}})
        )
        agent = _in_process_agent(tmp_path, channel, trusted)
        agent._recover()
        status = json.loads(installer_status.read_text())
        if tried:  # the first death: counted, tried again
            assert status["attempting"]["deaths"] == 1
            assert agent.failed == {}
        else:  # the second: given up, and said why
            assert status["attempting"] is None
            failed = agent.failed[str(release.release)]
            assert failed["final"] is True
            assert failed["error"] == "the agent stopped 2 times while installing it"
            check = agent.check()
            assert (check["result"], check["reason"]) == ("skipped", "interrupted")
            assert agent.server.serving is None
