"""Steps 15-17: the edge leg. A TUF channel in a folder; ``@production`` published to it through
the ``steward-edge`` target (a governed deploy); two real agent processes (groups north and south)
install it and answer; a release with a baseline replaces it; north is fed drifted inputs, south
normal ones; their statistics (sketches, never rows) are judged by ``steward monitor`` from the
``edge`` data source, and the monitor's rule rolls ``@production`` back, which republishes the
previous release on the channel: both agents follow it. The agents are stopped at the end, and
when any step fails."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from mlflow_steward.demo import gateway
from mlflow_steward.demo.data import DemoData
from mlflow_steward.demo.governance import promote
from mlflow_steward.demo.monitor import judge, recalibrated
from mlflow_steward.demo.output import step
from mlflow_steward.demo.training import log_model

DEPLOYMENT = "breast-cancer-edge"
MONITOR = "breast-cancer-edge"
#: The devices: (device id, group); north gets the drifted inputs.
DEVICES = (("north-1", "north"), ("south-1", "south"))
#: The agents check the channel this often, and close a statistics window this often (the
#: quickstart waits for both; a device in the field would use minutes).
INTERVAL, STATS_WINDOW = "1s", "1s"
#: The longest the quickstart waits for an agent to start, install or upload.
WAIT = 120.0
#: What the edge leg needs besides the core package: the `edge` extra.
NEEDS = ("tuf", "securesystemslib", "datasketches")
INSTALL = "pip install 'mlflow-steward[edge]'"
#: Runs the installed `steward` command in a child process, whichever way it was installed.
_STEWARD = "from mlflow_steward.cli.main import main; main()"


def missing_extra() -> list[str]:
    """The modules of the `edge` extra that are not installed."""
    return [m for m in NEEDS if importlib.util.find_spec(m) is None]


@dataclass
class EdgeAgent:
    """``steward edge agent`` in a child process, serving on 127.0.0.1."""

    device: str
    group: str
    port: int
    state: Path
    process: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.state.with_name(self.state.name + ".log")

    def status(self) -> dict[str, Any] | None:
        """``GET /status``, or ``None`` while it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.endpoint}/status", timeout=10) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except (OSError, ValueError):
            return None

    def installed(self) -> str | None:
        """The version it serves."""
        return ((self.status() or {}).get("installed") or {}).get("version")

    def stop(self) -> None:
        """SIGTERM: the agent spools its statistics, releases its state folder and exits."""
        if self.process.poll() is None:
            self.process.terminate()

    def wait_stopped(self) -> None:
        """Waits for it to exit after :meth:`stop`; SIGKILL after 30 s."""
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_agent(
    device: str, group: str, channel: Path, trusted_root: str, uploads: Path
) -> EdgeAgent:
    """An agent for ``device`` of ``group`` on a free port, its state in ``channel``'s sibling
    ``devices/<device>`` (its log beside it); it dies with this process."""
    from mlflow_steward.deployment.onprem.ports import die_with_parent, free_port

    state = channel.parent / "devices" / device
    state.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        sys.executable,
        "-c",
        _STEWARD,
        "edge",
        "agent",
        "--channel",
        str(channel),
        "--trusted-root",
        trusted_root,
        "--state-dir",
        str(state),
        "--port",
        str(port),
        "--group",
        group,
        "--device-id",
        device,
        "--interval",
        INTERVAL,
        "--uploads",
        str(uploads),
        "--stats-window",
        STATS_WINDOW,
    ]
    parent = os.getpid()
    with open(state.with_name(f"{device}.log"), "ab") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: die_with_parent(parent),
        )
    return EdgeAgent(device, group, port, state, process)


@contextlib.contextmanager
def running(channel: Path, trusted_root: str, uploads: Path) -> Iterator[list[EdgeAgent]]:
    """An agent for each of :data:`DEVICES`; every one started is stopped afterwards (also when
    a step, or starting the next agent, fails)."""
    agents: list[EdgeAgent] = []
    try:
        for device, group in DEVICES:
            agents.append(start_agent(device, group, channel, trusted_root, uploads))
        yield agents
    finally:
        for agent in agents:  # all told first: they stop side by side
            agent.stop()
        for agent in agents:
            agent.wait_stopped()
        if agents:
            click.echo(f"    agents stopped: {', '.join(a.device for a in agents)}")


def wait_until(what: str, agents: list[EdgeAgent], done: Callable[[], bool]) -> None:
    """Waits (:data:`WAIT` seconds at most) until ``done()``; an agent that exits meanwhile, or
    the time running out, is an error naming its log."""
    from mlflow_steward.deployment.onprem.ports import log_tail

    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for agent in agents:
            if agent.process.poll() is not None:
                raise click.ClickException(
                    f"agent {agent.device} exited ({agent.process.returncode}) before it {what}: "
                    f"{log_tail(agent.log)}"
                )
        if done():
            return
        time.sleep(0.2)
    logs = ", ".join(str(a.log) for a in agents)
    raise click.ClickException(f"the agents never {what} in {WAIT:.0f}s; see {logs}")


def wait_serving(agents: list[EdgeAgent], version: str) -> None:
    wait_until(f"served v{version}", agents, lambda: all(a.installed() == version for a in agents))


def uploaded_rows(uploads: Path, name: str, version: str, group: str) -> int:
    """The rows of ``version`` the devices of ``group`` have uploaded statistics of."""
    from mlflow_steward.deployment.edge.stats import read_uploads

    return read_uploads(str(uploads), name, version, group=group).rows


def edge_steps(data: DemoData) -> None:
    """Steps 15-17 (a one-line note instead when the `edge` extra is not installed)."""
    missing = missing_extra()
    if missing:
        step(15, "Edge devices: skipped")
        click.echo(f"    needs the edge extra ({', '.join(missing)} not installed): {INSTALL}")
        return
    from mlflow_steward.deployment.edge.channel import Channel
    from mlflow_steward.deployment.host import DeploymentHost

    name = data.name
    root = data.workspace.root / "edge"
    channel, keys, uploads = root / "channel", root / "keys", root / "uploads"
    host = DeploymentHost(
        data.workspace.session(), progress=lambda message: click.echo(f"      {message}")
    )
    if host.store.get(DEPLOYMENT) is not None:  # an earlier run's, with --keep
        host.delete(DEPLOYMENT)
    shutil.rmtree(root, ignore_errors=True)
    uploads.mkdir(parents=True)  # the monitor reads it before the first upload

    step(15, "Edge devices: a TUF channel in a folder, @production published to it as a bundle")
    created = Channel(channel, keys).init()
    click.echo(
        f"    channel {channel} created (steward edge channel init): root, targets, snapshot "
        f"and timestamp signed, keys in {keys}"
    )
    info = host.create(
        DEPLOYMENT,
        f"models:/{name}@production",
        target="steward-edge",
        config={"channel": str(channel), "keys": str(keys)},
    )
    current = info.version
    click.secho(
        f"    PUBLISHED v{current} as release {info.runtime['release']} "
        f"(steward deploy create {DEPLOYMENT} -t steward-edge: a governed deploy)",
        fg="green",
        bold=True,
    )
    with running(channel, created["trusted_root"], uploads) as agents:
        click.echo(
            "    agents started (steward edge agent), trusting the channel's first root: "
            + ", ".join(f"{a.device} (group {a.group}) at {a.endpoint}" for a in agents)
        )
        v_new = _release_with_baseline(data)  # trained while the agents start
        wait_serving(agents, current)
        for agent in agents:
            status, version, predictions = gateway.predict(agent.endpoint, data.X_test.head(5))
            click.echo(f"    {agent.device}: HTTP {status} from v{version}: {predictions}")

        step(16, f"Publishing v{v_new}, now @production, to the channel (steward deploy update)")
        click.echo(
            f"    version {v_new}, trained with steward.log_baseline(...), took @production "
            "while the agents started"
        )
        info = host.update(DEPLOYMENT)
        wait_serving(agents, v_new)
        click.secho(
            f"    UPDATED: both agents verified release {info.runtime['release']} (TUF), "
            f"health-checked v{v_new} and serve it",
            fg="green",
            bold=True,
        )

        step(17, "Device traffic: south-1 gets the test rows, north-1 the recalibrated scanner's")
        _device_traffic(data, agents, uploads, v_new)
        _judge_devices(data, agents, uploads)


def _release_with_baseline(data: DemoData) -> str:
    """Registers and promotes a release trained with steward.log_baseline(...); its version."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = data.fit(make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)))
    logged, _ = log_model(data, model, "logreg-c1-edge", fitted=model, baseline=True)
    return promote(data, logged.model_uri)


def _device_traffic(data: DemoData, agents: list[EdgeAgent], uploads: Path, version: str) -> None:
    """Sends north the drifted rows and south the test rows; waits for their statistics."""
    rows = {"north": recalibrated(data.X_test), "south": data.X_test}
    for agent in agents:
        gateway.send(agent.endpoint, rows[agent.group])
    expected = len(data.X_test)
    wait_until(
        "uploaded their statistics",
        agents,
        lambda: all(
            uploaded_rows(uploads, data.name, version, a.group) >= expected for a in agents
        ),
    )
    click.echo(
        f"    {expected} predictions on each; statistics uploaded to {uploads}: per-column "
        f"sketches in {STATS_WINDOW} windows, never the rows"
    )


def _judge_devices(data: DemoData, agents: list[EdgeAgent], uploads: Path) -> None:
    """Adds the devices' monitor, runs it, and shows the agents following its rollback."""
    from mlflow import MlflowClient

    config = f"""
  {MONITOR}:
    model: models:/{data.name}@production
    data: {{edge: {{uploads: {uploads}, group: north}}}}
    # 143 rows a device: Wasserstein distances up to ~0.15 (in reference std) are sampling noise
    thresholds: {{wasserstein: 0.25}}
    rules:
      - when: drift
        do: [rollback]
"""
    config_path = data.workspace.config_path
    config_path.write_text(config_path.read_text() + config)
    click.echo(
        "    monitor added to steward.yaml's monitors:" + config.rstrip().replace("\n", "\n    ")
    )
    result = judge(
        data.workspace.session(), "verdict", (MONITOR,), what="rows sketched on north's devices"
    )
    holder = MlflowClient().get_model_version_by_alias(data.name, "production").version
    if result.status != "drift" or str(holder) == result.version:
        raise click.ClickException("the drifted device traffic did not roll @production back")
    wait_serving(agents, str(holder))
    click.secho(
        f"    ROLLED BACK by the monitor: @production -> v{holder}, republished on the channel; "
        + " and ".join(f"{a.device} serves v{a.installed()}" for a in agents),
        fg="yellow",
        bold=True,
    )
