"""`steward quickstart` as a new user runs it: the installed console script, in a real process."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploying import processes_naming

STEWARD = str(Path(sys.executable).with_name("steward"))
USER, MONITOR, GATEWAY = "quickstart-user", "steward-monitor", "steward-gateway"
EVIDENCE = "steward-evidence"

#: Every audit entry the quickstart makes up to `steward audit verify` (actor, action, version,
#: decision), by the step of the README's "What the quickstart shows" that makes it: this list
#: is where the "61 entries" the quickstart prints come from.
QUICKSTART_LOG = [
    # 1. the unsigned model: its model is created, the version refused, the empty model removed
    (USER, "create_registered_model", None, "allowed"),
    (USER, "create_model_version", None, "refused"),
    (USER, "delete_registered_model", None, "allowed"),
    # the signed models: the model again, v1 (logistic regression), v2 (coin flip)
    (USER, "create_registered_model", None, "allowed"),
    (USER, "create_model_version", "1", "allowed"),
    (USER, "create_model_version", "2", "allowed"),
    # 2. v1 to @production without an owner tag: required-tags refuses
    (USER, "set_alias", "1", "refused"),
    # 3. v2 tagged owner, then to @production: metric-threshold refuses
    (USER, "set_model_version_tag", "2", "allowed"),
    (USER, "set_alias", "2", "refused"),
    # 4. v1 tagged owner, then promoted
    (USER, "set_model_version_tag", "1", "allowed"),
    (USER, "set_alias", "1", "allowed"),
    (EVIDENCE, "record_evidence", "1", "allowed"),  # what the promotion rested on
    # 5. deployed on-prem: the decision, then the step
    (USER, "deploy", "1", "allowed"),
    (USER, "deployment_create", "1", "allowed"),
    (EVIDENCE, "record_evidence", "1", "allowed"),  # what the deploy rested on
    # 6. v3 registered, tagged, promoted, then the blue/green update
    (USER, "create_model_version", "3", "allowed"),
    (USER, "set_model_version_tag", "3", "allowed"),
    (USER, "set_alias", "3", "allowed"),
    (EVIDENCE, "record_evidence", "3", "allowed"),  # what the promotion rested on
    (USER, "deploy", "3", "allowed"),
    (USER, "deployment_update", "3", "allowed"),
    (EVIDENCE, "record_evidence", "3", "allowed"),  # what the deploy rested on
    # 7. the bad release v4 deployed by version (not promoted), and the gateway's rollback
    (USER, "create_model_version", "4", "allowed"),
    (USER, "deploy", "4", "allowed"),
    (USER, "deployment_update", "4", "allowed"),
    (EVIDENCE, "record_evidence", "4", "allowed"),  # what the deploy rested on
    (GATEWAY, "deployment_auto_rollback", "3", "automatic"),
    # 8. v5 with a baseline: registered, tagged, promoted; the deployment follows the alias
    (USER, "create_model_version", "5", "allowed"),
    (USER, "set_model_version_tag", "5", "allowed"),
    (USER, "set_alias", "5", "allowed"),
    (EVIDENCE, "record_evidence", "5", "allowed"),  # what the promotion rested on
    (USER, "deploy", "5", "allowed"),
    (USER, "deployment_update", "5", "allowed"),
    (EVIDENCE, "record_evidence", "5", "allowed"),  # what the deploy rested on
    # two monitor runs (healthy, drift), each tagging v5's status and last run
    (MONITOR, "set_model_version_tag", "5", "allowed"),
    (MONITOR, "set_model_version_tag", "5", "allowed"),
    (MONITOR, "set_model_version_tag", "5", "allowed"),
    (MONITOR, "set_model_version_tag", "5", "allowed"),
    # the drift rule rolls @production back to v3, and the deployment with it
    (MONITOR, "set_alias", "3", "allowed"),
    (EVIDENCE, "record_evidence", "3", "allowed"),  # what the promotion rested on
    (MONITOR, "deploy", "3", "allowed"),
    (MONITOR, "deployment_update", "3", "allowed"),
    (EVIDENCE, "record_evidence", "3", "allowed"),  # what the deploy rested on
    # the on-prem deployment stops before the edge leg (it follows @production too)
    (USER, "deployment_delete", "3", "allowed"),
    # 9. @production (v3) published to the edge channel: the steward-edge target's create
    (USER, "deploy", "3", "allowed"),
    (USER, "deployment_create", "3", "allowed"),
    (EVIDENCE, "record_evidence", "3", "allowed"),  # what the deploy rested on
    # v6 with a baseline: registered, tagged, promoted, then published (the target's update)
    (USER, "create_model_version", "6", "allowed"),
    (USER, "set_model_version_tag", "6", "allowed"),
    (USER, "set_alias", "6", "allowed"),
    (EVIDENCE, "record_evidence", "6", "allowed"),  # what the promotion rested on
    (USER, "deploy", "6", "allowed"),
    (USER, "deployment_update", "6", "allowed"),
    (EVIDENCE, "record_evidence", "6", "allowed"),  # what the deploy rested on
    # the edge monitor's run (drift on north's sketches), tagging v6's status and last run
    (MONITOR, "set_model_version_tag", "6", "allowed"),
    (MONITOR, "set_model_version_tag", "6", "allowed"),
    # its rule rolls @production back to v3, and the edge deployment republishes v3
    (MONITOR, "set_alias", "3", "allowed"),
    (EVIDENCE, "record_evidence", "3", "allowed"),  # what the promotion rested on
    (MONITOR, "deploy", "3", "allowed"),
    (MONITOR, "deployment_update", "3", "allowed"),
    (EVIDENCE, "record_evidence", "3", "allowed"),  # what the deploy rested on
]
#: The columns the quickstart's drifted inputs scale by 1.4 (demo.monitor.recalibrated).
SHIFTED = [
    f"{kind} {measure}"
    for kind in ("mean", "worst")
    for measure in (
        "radius",
        "texture",
        "perimeter",
        "area",
        "smoothness",
        "compactness",
        "concavity",
        "concave points",
        "symmetry",
        "fractal dimension",
    )
]


def _steward(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [STEWARD, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.mark.slow
def test_quickstart_end_to_end_then_by_hand(tmp_path):
    proc = _steward("quickstart", "--dir", "qs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "[require-signature] the model has no signature" in out
    assert "registered models named 'breast-cancer' left behind: 0" in out
    assert "[required-tags] missing tag owner on the version" in out
    assert "[metric-threshold] accuracy=0.629371 is below the minimum 0.8" in out
    assert "ALLOWED: models:/breast-cancer@production -> version 1" in out
    # Deployment: @production served on-prem, predictions through the gateway, a blue/green
    # update under load without a failed request, and a bad release rolled back automatically.
    assert "SERVING: version 1 at http://127.0.0.1:" in out
    assert "HTTP 200 from v1: predictions [0, 1, 1, 1, 1]" in out
    assert "true labels:               [0, 1, 1, 1, 1]" in out
    assert re.search(
        r"SWITCHED to version 3: \d+ requests during the update, 0 failed; "
        r"answered by v1 then v3\n",  # each client: v1, then v3 only, never back
        out,
    ), _step(out, 9)
    assert re.search(
        r"ROLLED BACK automatically to version 3: automatic rollback: error rate of "
        r"v4 was \d+\.\d% over the last \d+ requests",
        out,
    ), _step(out, 10)
    assert re.search(r"auto-rollback +v4 -> v3 +by steward-gateway", out)
    # Monitoring: healthy on normal traffic, drift on the shifted traffic, rolled back by the rule.
    assert "verdict: HEALTHY on 143 logged rows of v5" in out
    assert "verdict: DRIFT on 143 logged rows of v5" in out
    assert (
        "rule -> rollback: moved @production from v5 back to v3; deployment breast-cancer "
        "now serves v3" in out
    )
    assert re.search(r"#\d+ +steward-monitor +set_alias +breast-cancer/3@production +allowed", out)
    assert "deployment 'breast-cancer' stopped" in out
    # Edge: v3 then v6 published, the agents follow; north's drift rolls @production back and
    # the channel republishes v3.
    assert "PUBLISHED v3 as release 1" in out
    assert "north-1: HTTP 200 from v3: [0, 1, 1, 1, 1]" in out
    assert "UPDATED: both agents verified release 2 (TUF), health-checked v6 and serve it" in out
    assert "verdict: DRIFT on 143 rows sketched on north's devices of v6" in out
    assert (
        "rule -> rollback: moved @production from v6 back to v3; deployment breast-cancer-edge "
        "now serves v3" in out
    )
    assert "north-1 serves v3 and south-1 serves v3" in out
    assert "agents stopped: north-1, south-1" in out
    # The count `verify` prints is the quickstart's decisions and steps, listed in QUICKSTART_LOG.
    assert f"audit log OK: {len(QUICKSTART_LOG)} entries, hash chain intact" in out

    root = tmp_path / "qs"
    edge = root / "edge"
    _check_edge_leg(root, edge)
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "MLFLOW_STEWARD_CONFIG": str(root / "steward.yaml"),
    }
    check = _steward("check", "models:/breast-cancer/2", "--to", "production", "--json", env=env)
    assert check.returncode == 1, check.stderr
    verdicts = {p["policy"]: p["allowed"] for p in json.loads(check.stdout)["policies"]}
    assert verdicts == {
        "require-signature": True,
        "required-tags": True,
        "metric-threshold": False,
        "content-digest": True,  # on by default: the artifacts are as registered
    }

    history = _steward("history", "breast-cancer", env=env)
    assert "@production" in history.stdout
    assert "- -> 1" in history.stdout

    deployed = _steward("deploy", "history", "breast-cancer", env=env)
    assert [line.split()[1] for line in deployed.stdout.splitlines()] == [
        "create",
        "update",
        "update",
        "auto-rollback",
        "update",
        "update",
        "delete",
    ]
    monitor_runs = _steward("monitor", "run", "--no-log", "--json", env=env)
    assert monitor_runs.returncode == 1, monitor_runs.stdout
    runs = json.loads(monitor_runs.stdout)["runs"]
    assert [r["monitor"] for r in runs] == ["breast-cancer-production", "breast-cancer-edge"]
    for run in runs:
        assert run["status"] == "error"
        # @production is v3 again, logged without a baseline; the runner loads the baseline
        # before the data (a source is told the model's columns), so that is what it names
        # first (the deployment is gone too).
        assert "models:/breast-cancer/3 has no baseline to compare with" in run["error"], run
        assert run["actions"] == []
    channel = _steward("edge", "channel", "show", "--channel", str(edge / "channel"), env=env)
    # v3's bundle is one target, republished as release 3 by the rollback.
    assert re.findall(r"release (\d+): breast-cancer v(\d+)", channel.stdout) == [
        ("2", "6"),
        ("3", "3"),
    ], channel.stdout
    fleet = _steward("edge", "status", "--uploads", str(edge / "uploads"), env=env)
    assert re.findall(r"(\S+-1) +breast-cancer v(\d+) +(\w+)", fleet.stdout) == [
        ("north-1", "3", "healthy"),
        ("south-1", "3", "healthy"),
    ], fleet.stdout
    requests = list((root / "home" / "deployments" / "breast-cancer" / "requests").glob("*.jsonl"))
    assert requests, "the gateway logged no requests"

    assert _steward("audit", "verify", env=env).returncode == 0
    with sqlite3.connect(root / "mlflow.db") as conn:
        logged = conn.execute(
            "SELECT actor, action, version, decision FROM steward_audit ORDER BY seq"
        ).fetchall()
    # The quickstart's own entries, then the deletion that stops its deployment. The person is
    # whoever runs it (`quickstart-user`, or MLFLOW_STEWARD_ACTOR as in these tests).
    person = logged[0][0]
    expected = [(person if actor == USER else actor, *rest) for actor, *rest in QUICKSTART_LOG]
    # The gateway's rollback of v4 is another process's step: it lands once v4's canary fails,
    # which may be before `deploy update` has recorded the evidence of v4's deploy. Anywhere
    # after v4 went live and before v5 is registered is right; everything else is in order.
    rollback = (GATEWAY, "deployment_auto_rollback", "3", "automatic")
    live, next_step = (
        expected.index((person, "deployment_update", "4", "allowed")),
        expected.index((person, "create_model_version", "5", "allowed")),
    )
    assert logged.count(rollback) == 1, logged
    assert live < logged.index(rollback) < next_step, logged
    logged.remove(rollback)
    expected.remove(rollback)
    assert logged == expected  # nothing after: the agents' processes are not audited steps
    with sqlite3.connect(root / "mlflow.db") as conn:
        edge_steps = conn.execute(
            "SELECT actor, action, version FROM steward_audit WHERE action LIKE 'deploy%' AND "
            "json_extract(details, '$.target') = 'steward-edge' ORDER BY seq"
        ).fetchall()
    # The two publishes and the monitor's republish, each decided (`deploy`) and then done.
    assert edge_steps == [
        (person, "deploy", "3"),
        (person, "deployment_create", "3"),
        (person, "deploy", "6"),
        (person, "deployment_update", "6"),
        (MONITOR, "deploy", "3"),
        (MONITOR, "deployment_update", "3"),
    ]

    # South's inputs were the test rows unchanged: judged from its sketches the same way, v6 is
    # healthy there (the drift came from north alone).
    south = tmp_path / "south.yaml"
    south.write_text(
        "monitors:\n  south:\n    model: models:/breast-cancer/6\n"
        f"    data: {{edge: {{uploads: {edge / 'uploads'}, group: south}}}}\n"
        "    thresholds: {wasserstein: 0.25}\n"
    )
    judged = _steward(
        "monitor", "run", "--no-log", "--json", env={**env, "MLFLOW_STEWARD_CONFIG": str(south)}
    )
    [run] = json.loads(judged.stdout)["runs"]
    assert (run["status"], run["rows"], run["drifted"]) == ("healthy", 143, []), run

    with sqlite3.connect(root / "mlflow.db") as conn:
        conn.execute("UPDATE steward_audit SET actor = 'mallory' WHERE seq = 7")
    broken = _steward("audit", "verify", env=env)
    assert broken.returncode == 1
    assert "BROKEN at entry 7" in broken.stderr


def _step(out: str, n: int) -> str:
    """Step ``n`` of the quickstart's output (to show when its assertion fails)."""
    start = out.find(f"[{n}] ")
    end = out.find(f"[{n + 1}] ", start)
    return out[start : end if end > 0 else None]


def _check_edge_leg(root: Path, edge: Path) -> None:
    """The edge leg, from what its agents and the monitor left: each agent installed v3, v6,
    then v3 again, and stopped; none is left running; their uploaded statistics hold every row
    they answered, once; the edge monitor's recorded verdict names exactly the shifted
    columns."""
    from mlflow_steward.deployment.edge.stats import read_uploads

    for device, group in (("north-1", "north"), ("south-1", "south")):
        events = [
            json.loads(line)
            for line in (edge / "devices" / device / "events.jsonl").read_text().splitlines()
        ]
        installed = [(e["version"], e["release"]) for e in events if e["event"] == "installed"]
        assert installed == [("3", 1), ("6", 2), ("3", 3)], (device, events)
        assert events[-1]["event"] == "stopped", (device, events[-1])
        window = read_uploads(str(edge / "uploads"), "breast-cancer", "6", group=group)
        assert (window.rows, window.devices) == (143, [device]), window
    assert processes_naming(str(edge)) == []
    with sqlite3.connect(root / "mlflow.db") as conn:
        [(status, detail)] = conn.execute(
            "SELECT status, detail FROM steward_monitor_runs WHERE monitor = 'breast-cancer-edge'"
        ).fetchall()
    assert status == "drift"
    assert sorted(json.loads(detail)["drifted"]) == sorted(SHIFTED)


@pytest.mark.parametrize("module", ["tuf", "securesystemslib", "datasketches"])
def test_edge_steps_without_the_edge_extra_say_what_to_install_and_do_nothing(
    module, monkeypatch, capsys
):
    """Without a module of the `edge` extra the edge leg is one note naming the module and the
    install command; it touches nothing (its demo data is not even read)."""
    from mlflow_steward.demo.edge import edge_steps

    monkeypatch.setitem(sys.modules, module, None)  # importlib.util.find_spec: not installed
    edge_steps(None)
    out = capsys.readouterr().out
    assert "[15] Edge devices: skipped" in out
    assert (
        f"needs the edge extra ({module} not installed): pip install 'mlflow-steward[edge]'" in out
    )


@pytest.mark.slow
def test_the_edge_legs_agents_are_stopped_when_a_step_fails(tmp_path):
    """The quickstart's agents are real processes: when a step fails while they run, every one
    is stopped (SIGTERM: each records `stopped`) before the error goes on, and none is left."""
    from mlflow_steward.demo.edge import DEVICES, running
    from mlflow_steward.deployment.edge.channel import Channel

    channel, uploads = tmp_path / "edge" / "channel", tmp_path / "edge" / "uploads"
    trusted_root = Channel(channel, tmp_path / "edge" / "keys").init()["trusted_root"]
    started = []

    def a_step_fails_while_they_run() -> None:
        with running(channel, trusted_root, uploads) as agents:
            started.extend(agents)
            deadline = time.monotonic() + 120
            while not all(a.status() for a in agents):  # both answer (on an empty channel)
                assert time.monotonic() < deadline, [a.log.read_text() for a in agents]
                time.sleep(0.2)
            raise RuntimeError("a step failed")

    with pytest.raises(RuntimeError, match="a step failed"):
        a_step_fails_while_they_run()
    assert [a.device for a in started] == [device for device, _ in DEVICES]
    assert [a.process.returncode for a in started] == [0, 0]
    for agent in started:
        events = (agent.state / "events.jsonl").read_text().splitlines()
        assert json.loads(events[-1])["event"] == "stopped"
    assert processes_naming(str(channel)) == []
