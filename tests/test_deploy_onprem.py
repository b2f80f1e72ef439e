"""The on-prem target end to end: real gateways and MLflow scoring servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from mlflow_steward.config import parse_config
from mlflow_steward.deployment.host import DeploymentHost
from mlflow_steward.deployment.onprem.ports import free_port, gateway_alive
from mlflow_steward.deployment.onprem.reqlog import read_request_log
from mlflow_steward.errors import DeploymentError
from mlflow_steward.governance.governor import PolicyDenied
from mlflow_steward.lifecycle.session import StewardSession
from tests.deploying import (
    BATCH,
    COLUMNS,
    EXAMPLE,
    Load,
    build_registry,
    expected,
    processes_naming,
)

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
FAST = {"drain": "0.5s", "watch": "0s"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_registry(tmp_path_factory.mktemp("deploy") / "mlflow.db")


def _gateways(db_uri: str) -> list[int]:
    """Gateway processes of this registry still alive (none may outlive a test)."""
    return processes_naming("onprem.gateway", db_uri)


@pytest.fixture
def deploy(registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``deploy(config_text=None)`` -> a DeploymentHost on the shared registry; every deployment
    made in the test is deleted and every gateway stopped afterwards."""
    monkeypatch.setenv("MLFLOW_STEWARD_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    hosts: list[DeploymentHost] = []

    def make(config_text: str | None = None) -> DeploymentHost:
        config = parse_config(config_text or "", path="steward.yaml")
        session = StewardSession(
            registry_uri=f"steward+{registry}", tracking_uri=registry, config=config
        )
        host = DeploymentHost(session, progress=lambda m: None)
        hosts.append(host)
        return host

    yield make
    if hosts:
        for info in hosts[0].store.list():
            with contextlib.suppress(Exception):
                hosts[0].delete(info.name)
    for pid in _gateways(registry):
        os.kill(pid, signal.SIGKILL)


def _run(args: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, **kw)


def _env(registry: str, tmp_path: Path, config: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(MLFLOW_TRACKING_URI=registry, MLFLOW_STEWARD_HOME=str(tmp_path / "home"))
    if config is not None:
        env["MLFLOW_STEWARD_CONFIG"] = str(config)
    return env


def _post(endpoint: str, rows, columns=COLUMNS) -> requests.Response:
    body = {"dataframe_split": {"columns": columns, "data": rows}}
    return requests.post(f"{endpoint}/invocations", json=body, timeout=30)


def test_mlflow_cli_and_steward_cli_deploy_and_predict(registry, deploy, tmp_path):
    deploy()  # cleanup of whatever the CLIs create
    env = _env(registry, tmp_path)
    port = free_port()
    created = _run(
        [
            str(BIN / "mlflow"),
            "deployments",
            "create",
            "-t",
            "steward-onprem",
            "--name",
            "fraud",
            "-m",
            "models:/fraud@production",
            "-C",
            f"port={port}",
        ],
        env,
    )
    assert created.returncode == 0, created.stderr[-3000:]
    endpoint = f"http://127.0.0.1:{port}"
    rows = [[0.9, 0.1, 0.0], [-0.4, 0.2, 0.1], [2.0, -1.0, 0.3]]
    (tmp_path / "in.json").write_text(
        json.dumps([dict(zip(COLUMNS, r, strict=False)) for r in rows])
    )
    predicted = _run(
        [
            str(BIN / "mlflow"),
            "deployments",
            "predict",
            "-t",
            "steward-onprem",
            "--name",
            "fraud",
            "--input-path",
            str(tmp_path / "in.json"),
        ],
        env,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    # pandas output, as MLflow's CLI prints it: one column of the model's labels
    assert list(json.loads(predicted.stdout)["0"].values()) == expected("1", rows)

    ours = _run(
        [str(BIN / "steward"), "deploy", "predict", "fraud", "-i", str(tmp_path / "in.json")], env
    )
    assert ours.returncode == 0, ours.stderr
    assert [r["0"] for r in json.loads(ours.stdout)] == expected("1", rows)
    (tmp_path / "split.json").write_text(json.dumps({"columns": COLUMNS, "data": rows}))
    split = _run(
        [str(BIN / "steward"), "deploy", "predict", "fraud", "-i", str(tmp_path / "split.json")],
        env,
    )
    assert [r["0"] for r in json.loads(split.stdout)] == expected("1", rows), split.stderr

    # The generic target reaches the same deployment; the alias was recorded as a version.
    got = _run(
        [
            str(BIN / "mlflow"),
            "deployments",
            "get",
            "-t",
            "steward:/steward-onprem",
            "--name",
            "fraud",
        ],
        env,
    )
    assert got.returncode == 0, got.stderr[-2000:]
    assert "version: 1" in got.stdout
    assert "requested: models:/fraud@production" in got.stdout

    # A request with a missing column: a 400 naming the schema problem; serving goes on.
    bad = _post(endpoint, [[0.1, 0.2]], columns=["x0", "x1"])
    assert bad.status_code == 400
    assert "missing inputs" in bad.json()["message"]
    assert "x2" in bad.json()["message"]
    wrong_type = _post(endpoint, [["a lot", 0.2, 0.1]])
    assert wrong_type.status_code == 400
    assert _post(endpoint, rows).json()["predictions"] == expected("1", rows)

    status = _run([str(BIN / "steward"), "deploy", "status", "fraud", "--json"], env)
    live = json.loads(status.stdout)["live"]
    assert live["health"]["healthy"] is True
    assert live["traffic"] == {"1": 100}
    assert live["requests"] >= 5
    assert live["errors"] == 0

    # Every request is on the request log, with its id, timestamp and payloads.
    log_dir = tmp_path / "home" / "deployments" / "fraud" / "requests"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(read_request_log(log_dir)) < live["requests"]:
        time.sleep(0.2)
    records = read_request_log(log_dir)
    assert len(records) >= 5
    assert all(r["request_id"] and r["ts"] and r["version"] == "1" for r in records)
    assert {r["status"] for r in records} == {200, 400}
    assert any('"x2"' in (r["request"] or "") for r in records)

    deleted = _run(
        [str(BIN / "mlflow"), "deployments", "delete", "-t", "steward-onprem", "--name", "fraud"],
        env,
    )
    assert deleted.returncode == 0, deleted.stderr[-2000:]
    assert not _gateways(registry)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{endpoint}/ping", timeout=2)


def test_blue_green_switch_under_load_fails_no_request(deploy):
    host = deploy()
    port = free_port()
    info = host.create(
        "bg", "models:/fraud@production", target="steward-onprem", config={"port": port, **FAST}
    )
    assert info.status == "serving"
    assert info.version == "1"
    endpoint = f"http://127.0.0.1:{port}"
    with Load(endpoint, clients=4) as load:
        load.wait_for(40)
        began = time.monotonic()
        updated = host.update("bg", "models:/fraud/2")
        done = time.monotonic()
        load.wait_for(40)
    assert updated.version == "2"
    assert updated.traffic == {"2": 100}
    assert load.failures == []
    # Old until the switch, then new; requests in flight at the switch finish on the old one.
    assert load.versions_between(0, began) == {"1"}
    assert load.versions_between(done, float("inf")) == {"2"}
    assert load.versions_between(began, done) <= {"1", "2"}
    for _, version, predictions in load.seen:
        assert predictions == expected(version, BATCH)
    steps = [(s.kind, s.from_version, s.version, s.status) for s in host.store.history("bg")]
    assert steps == [("create", None, "1", "serving"), ("update", "1", "2", "serving")]
    deploys = [
        e
        for e in host.session.audit.entries(model="fraud")
        if e.action == "deploy" and e.details.get("deployment") == "bg"
    ]
    assert [(e.version, e.decision, e.details["requested"]) for e in deploys] == [
        ("1", "allowed", "models:/fraud@production"),
        ("2", "allowed", "models:/fraud/2"),
    ]
    assert host.session.audit.verify().ok


def test_failed_updates_leave_the_old_version_serving(deploy):
    host = deploy()
    port = free_port()
    host.create("safe", "models:/fraud/1", target="steward-onprem", config={"port": port, **FAST})
    with Load(f"http://127.0.0.1:{port}", clients=4) as load:
        load.wait_for(20)
        with pytest.raises(DeploymentError, match=r"v3 failed to load.*weights file is missing"):
            host.update("safe", "models:/fraud/3")
        with pytest.raises(DeploymentError, match=r"v4 failed its health check.*HTTP 400"):
            host.update("safe", "models:/fraud/4")
        load.wait_for(20)
    assert load.failures == []
    assert load.versions() == ["1"]
    info = host.get("safe")
    assert (info.version, info.status, info.traffic) == ("1", "serving", {"1": 100})
    failed = [
        (s.kind, s.version, s.reason) for s in host.store.history("safe") if s.status == "failed"
    ]
    assert [f[:2] for f in failed] == [("update-failed", "3"), ("update-failed", "4")]
    assert "weights file is missing" in failed[0][2]
    assert "the model raised ValueError: division by zero in feature scaling" in failed[1][2]


def test_canary_split_then_rollback_then_promote(deploy):
    """docs/deployment.md, canary: a split, a rollback of it, another canary that no update may
    replace while it runs ("promote or roll it back first"), then its promotion."""
    host = deploy()
    port = free_port()
    host.create("can", "models:/fraud/1", target="steward-onprem", config={"port": port, **FAST})
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.raises(DeploymentError, match="port of deployment 'can' cannot change on update"):
        host.update("can", "models:/fraud/2", config={"port": free_port()})
    canary = host.update("can", "models:/fraud/2", traffic=50)
    assert canary.status == "canary"
    assert canary.traffic == {"1": 50, "2": 50}
    versions = {_post(endpoint, BATCH).headers["X-Steward-Model-Version"] for _ in range(40)}
    assert versions == {"1", "2"}
    rolled = host.rollback("can")
    assert rolled.traffic == {"1": 100}
    assert rolled.status == "serving"
    assert {_post(endpoint, BATCH).headers["X-Steward-Model-Version"] for _ in range(10)} == {"1"}
    host.update("can", "models:/fraud/2", traffic=10)
    # While a canary runs, another update is refused and the split stays as it is.
    with pytest.raises(DeploymentError, match="canary of v2 is running; promote or roll it back"):
        host.update("can", "models:/fraud/1")
    with pytest.raises(DeploymentError, match="canary of v2 is running; promote or roll it back"):
        host.update("can", "models:/fraud/2", traffic=50)
    assert host.get("can").traffic == {"1": 90, "2": 10}
    assert host.status("can")["live"]["traffic"] == {"1": 90, "2": 10}
    promoted = host.promote_canary("can")
    assert promoted.traffic == {"2": 100}
    assert promoted.version == "2"
    assert {_post(endpoint, BATCH).headers["X-Steward-Model-Version"] for _ in range(10)} == {"2"}
    kinds = [s.kind for s in host.store.history("can")]
    assert kinds == [
        "create",
        "canary",
        "rollback",
        "canary",
        "update-failed",
        "canary-failed",
        "promote",
    ]


def test_error_rate_rolls_back_automatically(deploy):
    host = deploy()
    port = free_port()
    host.create(
        "watch",
        "models:/fraud/1",
        target="steward-onprem",
        config={
            "port": port,
            "drain": "0.5s",
            "watch": "8s",
            "error_rate_min_requests": 10,
            "error_rate_window": "30s",
        },
    )
    # v5 passes its health gate (its input example has 2 rows) but fails on 3-row batches.
    updated = host.update("watch", "models:/fraud/5")
    switched = time.monotonic()
    assert updated.version == "5"
    with Load(f"http://127.0.0.1:{port}", clients=2) as load:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and host.get("watch").version != "1":
            time.sleep(0.2)
        load.wait_for(10)
    info = host.get("watch")
    assert info.version == "1"
    assert "automatic rollback" in (info.reason or "")
    assert load.versions()[-1] == "1"
    assert load.statuses[400] >= 10  # v5's failures, until the rollback
    step = host.store.history("watch")[-1]
    assert (step.kind, step.from_version, step.version, step.actor) == (
        "auto-rollback",
        "5",
        "1",
        "steward-gateway",
    )
    assert "error rate of v5" in step.reason
    entry = host.session.audit.entries(model="fraud", newest_first=True, limit=1)[0]
    assert (entry.action, entry.actor, entry.decision) == (
        "deployment_auto_rollback",
        "steward-gateway",
        "automatic",
    )
    assert host.get("watch").requested == "models:/fraud/1"  # `update` will not bring v5 back
    # v1 was due to stop when the watch period ended; switched back to, it must keep serving.
    time.sleep(max(0.0, switched + 10 - time.monotonic()))
    after = _post(f"http://127.0.0.1:{port}", BATCH)
    assert after.status_code == 200
    assert after.headers["X-Steward-Model-Version"] == "1"


def test_deploy_refused_by_policy_starts_nothing(deploy):
    host = deploy("""
policies:
  - use: deploy-requires-alias
deployments:
  prod:
    target: steward-onprem
    production: true
""")
    port = free_port()
    with pytest.raises(
        PolicyDenied,
        match=r"\[deploy-requires-alias\] version 2 does not hold "
        r"@production \(version 1 does\)",
    ):
        host.create("prod", "models:/fraud/2", config={"port": port})
    assert host.store.get("prod") is None
    assert not _gateways(host.store.engine.url.render_as_string())
    with socket.socket() as s:  # nothing listens on the port
        assert s.connect_ex(("127.0.0.1", port)) != 0
    entry = host.session.audit.entries(model="fraud", newest_first=True, limit=1)[0]
    assert (entry.action, entry.decision, entry.version) == ("deploy", "refused", "2")
    assert entry.details["deployment"] == "prod"
    assert entry.details["target"] == "steward-onprem"
    assert entry.details["production"] is True


def test_bad_input_is_refused_before_anything_starts(deploy, tmp_path):
    host = deploy()
    with pytest.raises(
        DeploymentError,
        match=r"unknown deployment target 'onprem' \(did you mean 'steward-onprem'\?\); "
        r"available targets: steward-edge, steward-onprem$",
    ):
        host.create("x", "models:/fraud/1", target="onprem", config={"port": free_port()})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DeploymentError, match=f"port {port} on 127.0.0.1 is already in use"):
            host.create("x", "models:/fraud/1", target="steward-onprem", config={"port": port})
    with pytest.raises(DeploymentError, match=r"unknown model 'models:/nope@production'"):
        host.create(
            "x", "models:/nope@production", target="steward-onprem", config={"port": free_port()}
        )
    with pytest.raises(DeploymentError, match=r"unknown model 'models:/fraud/99'"):
        host.create("x", "models:/fraud/99", target="steward-onprem", config={"port": free_port()})
    with pytest.raises(DeploymentError, match=r"no option 'prot' \(did you mean 'port'\?\)"):
        host.create("x", "models:/fraud/1", target="steward-onprem", config={"prot": 1})
    with pytest.raises(DeploymentError, match=r"option workers='two'.*whole number"):
        host.create(
            "x",
            "models:/fraud/1",
            target="steward-onprem",
            config={"port": free_port(), "workers": "two"},
        )
    assert host.store.list() == []
    assert not (tmp_path / "home" / "deployments" / "x").exists()


def test_gateway_restart_restores_the_recorded_state(deploy, registry):
    host = deploy()
    port = free_port()
    host.create(
        "phoenix", "models:/fraud/1", target="steward-onprem", config={"port": port, **FAST}
    )
    host.update("phoenix", "models:/fraud/2", traffic=90)
    pid = host.get("phoenix").runtime["pid"]
    scoring = [s["pid"] for s in host.status("phoenix")["live"]["slots"]]
    os.kill(pid, signal.SIGKILL)  # the host crashes
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in scoring):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{p}").exists() for p in scoring), "scoring servers outlived it"
    assert host.status("phoenix")["live"]["gateway"] == "down"
    restored = host.start("phoenix")
    assert restored.status == "canary"
    assert restored.traffic == {"1": 10, "2": 90}
    endpoint = f"http://127.0.0.1:{port}"
    # Routing is random at 10/90: 40 requests missed v1 in 1.5% of runs (seen in CI). Up to
    # 300 (a miss in about 1e-14 of runs), stopping once both versions answered.
    seen: set[str] = set()
    for _ in range(300):
        seen.add(_post(endpoint, BATCH).headers["X-Steward-Model-Version"])
        if len(seen) == 2:
            break
    assert seen == {"1", "2"}
    # The roles came back too: v2 is still the canary (90%), so promoting it serves v2.
    assert host.promote_canary("phoenix").traffic == {"2": 100}


def test_emit_systemd_writes_a_unit_that_serves_the_recorded_deployment(registry, deploy, tmp_path):
    host = deploy()
    env = _env(registry, tmp_path)
    port = free_port()
    out = tmp_path / "units"
    result = _run(
        [
            str(BIN / "steward"),
            "deploy",
            "create",
            "svc",
            "-m",
            "models:/fraud/1",
            "-t",
            "steward-onprem",
            "-C",
            f"port={port}",
            "--emit",
            "systemd",
            "--out",
            str(out),
        ],
        env,
    )
    assert result.returncode == 0, result.stderr
    unit = (out / "steward-deploy-svc.service").read_text()
    assert "Restart=on-failure" in unit
    assert "[Install]" in unit
    exec_line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert "mlflow_steward.deployment.onprem.gateway svc --registry-uri" in exec_line
    assert host.get("svc").status == "installed"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing started
    # What systemd would run: the ExecStart line, in the foreground.
    import shlex

    service = subprocess.Popen(
        shlex.split(exec_line.removeprefix("ExecStart=")),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        assert _post(f"http://127.0.0.1:{port}", EXAMPLE).json()["predictions"] == expected(
            "1", EXAMPLE
        )
    finally:
        service.send_signal(signal.SIGTERM)  # `systemctl stop`
        assert service.wait(timeout=60) == 0
    assert not _gateways(registry)
    assert host.get("svc").status == "stopped"


def _slot_pid(host: DeploymentHost, name: str, version: str) -> int:
    [pid] = [s["pid"] for s in host.status(name)["live"]["slots"] if s["version"] == version]
    return pid


def _wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if stat.split(") ", 1)[1].startswith("Z"):  # a zombie: dead, not yet reaped
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} still alive")


def test_requests_a_dead_version_did_not_answer_are_retried_then_503(deploy):
    """docs/deployment.md, Serving: a request the version did not answer is sent again, on
    another live version when there is one (up to three attempts); then the client gets 503
    TEMPORARILY_UNAVAILABLE with its X-Request-Id. The stable version of a 50% canary is killed:
    every request still gets v2's answer. Then v2 is killed too: 503."""
    host = deploy()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    host.create("retry", "models:/fraud/1", target="steward-onprem", config={"port": port, **FAST})
    host.update("retry", "models:/fraud/2", traffic=50)
    os.kill(_slot_pid(host, "retry", "1"), signal.SIGKILL)
    _wait_dead(_slot_pid(host, "retry", "1"))
    answers = [_post(endpoint, BATCH) for _ in range(30)]
    assert [r.status_code for r in answers] == [200] * 30
    assert {r.headers["X-Steward-Model-Version"] for r in answers} == {"2"}
    assert all(r.json()["predictions"] == expected("2", BATCH) for r in answers)

    os.kill(_slot_pid(host, "retry", "2"), signal.SIGKILL)
    _wait_dead(_slot_pid(host, "retry", "2"))
    body = {"dataframe_split": {"columns": COLUMNS, "data": BATCH}}
    gone = requests.post(
        f"{endpoint}/invocations", json=body, headers={"X-Request-Id": "lost-1"}, timeout=30
    )
    assert gone.status_code == 503, gone.text
    assert gone.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "did not answer" in gone.json()["message"]
    assert gone.headers["X-Request-Id"] == "lost-1"


def test_a_request_slower_than_request_timeout_gets_504(deploy, tmp_path):
    """docs/deployment.md, Limits: a request slower than request_timeout gets a JSON 504
    (DEADLINE_EXCEEDED) with its X-Request-Id; it counts as an error of that version and is on
    the request log. v6 takes 3 s on rows with x0 above 100; request_timeout is 1 s."""
    host = deploy()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    host.create(
        "slow",
        "models:/fraud/6",
        target="steward-onprem",
        config={"port": port, "request_timeout": "1s", "health_timeout": "30s", **FAST},
    )
    assert _post(endpoint, EXAMPLE).status_code == 200
    body = {"dataframe_split": {"columns": COLUMNS, "data": [[1000.0, 0.0, 0.0]]}}
    started = time.monotonic()
    late = requests.post(
        f"{endpoint}/invocations", json=body, headers={"X-Request-Id": "late-1"}, timeout=30
    )
    assert time.monotonic() - started < 2.9  # answered at the timeout, not when v6 finished
    assert late.status_code == 504, late.text
    assert late.json()["error_code"] == "DEADLINE_EXCEEDED"
    assert "within 1s (request_timeout)" in late.json()["message"]
    assert late.headers["X-Request-Id"] == "late-1"
    assert late.headers["X-Steward-Model-Version"] == "6"
    assert _post(endpoint, EXAMPLE).status_code == 200  # serving goes on
    [slot] = host.status("slow")["live"]["slots"]
    assert (slot["requests"], slot["errors"]) == (3, 1)
    log_dir = tmp_path / "home" / "deployments" / "slow" / "requests"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(read_request_log(log_dir)) < 3:
        time.sleep(0.2)
    statuses = {r["request_id"]: r["status"] for r in read_request_log(log_dir)}
    assert statuses["late-1"] == 504


def test_create_returns_with_the_gateways_pid_recorded_so_delete_waits_for_the_log(
    deploy, tmp_path
):
    """`create` returns once the gateway's runtime (its pid) is recorded, so `delete` waits for
    the gateway to stop, and the Parquet request log it writes as it stops is there when
    `delete` returns. Before, the gateway said "serving" first and recorded its pid after; under
    load `create` read the runtime in between and recorded it without the pid, and `delete`
    returned at once (docs/deployment.md read the folder before the file was written, in CI).
    The race is lost only under load: the old order also passed this test here at load 6, so it
    guards the promise, not the ordering itself."""
    host = deploy()
    port = free_port()
    logs = tmp_path / "requests"
    config = {"port": port, "request_log_format": "parquet", "request_log_dir": str(logs)}
    host.create("pq", "models:/fraud@production", target="steward-onprem", config=config | FAST)
    pid = host.store.require("pq").runtime.get("pid")
    assert gateway_alive(pid, "pq"), host.store.require("pq").runtime
    assert _post(f"http://127.0.0.1:{port}", BATCH).ok
    host.delete("pq")
    assert not gateway_alive(pid, "pq")
    files = sorted(p.name for p in logs.iterdir())
    assert [name.split("-")[-1] for name in files] == ["1.rows.parquet"], files
    records = read_request_log(logs)
    assert [(r["deployment"], r["version"], r["status"]) for r in records] == [("pq", "1", 200)]
