"""The edge agent's prediction throughput, with statistics off and on, and its update check with
nothing new.

- Throughput: `steward edge agent` as a real process serving a small scikit-learn model (the
  edge tests' ``beacon``), single-row ``dataframe_split`` requests from a pool of client threads
  (one keep-alive connection each, closed loop) for ``--seconds``; the median requests/s of
  ``--repeats`` rounds. With ``mlflow_steward.deployment.edge.stats`` installed, a second agent
  runs with ``--statistics --uploads <folder>`` (5-minute windows) and the two are alternated: the bar is statistics on at least 0.9x
  off (issue 16). Without that module only the "off" number is printed.
- Update check with nothing new: the agent's whole ``check()`` (python-tuf's refresh through
  ``ChannelReader``, then the agent's bookkeeping) against python-tuf's own
  ``Updater(...).refresh()`` on the same channel over HTTP, alternated; medians. Reported, no bar.

    .venv/bin/python benchmarks/bench_edge_agent.py --seconds 5 --repeats 3 --clients 4
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: F401 -- telemetry off
from bench_edge_check import _raw_check

from mlflow_steward.deployment.edge.agent import STATISTICS_MODULE, Agent
from mlflow_steward.deployment.edge.bundle import build_bundle
from mlflow_steward.deployment.edge.channel import Channel
from mlflow_steward.deployment.onprem.ports import free_port
from tests.edge_helpers import COLUMNS, build_edge_registry, static_server

BODY = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [[0.5, -0.2, 1.0]]}}).encode()
STEWARD = Path(sys.executable).with_name("steward")


@contextlib.contextmanager
def agent_process(
    channel: Path, trusted: Path, state: Path, *, stats: bool
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    log = open(state.with_name(state.name + ".log"), "wb")  # noqa: SIM115 -- closed below
    proc = subprocess.Popen(
        [
            str(STEWARD),
            "edge",
            "agent",
            "--channel",
            str(channel),
            "--trusted-root",
            str(trusted),
            "--state-dir",
            str(state),
            "--port",
            str(port),
            "--interval",
            "30s",
            *(
                ["--statistics", "--uploads", str(state.with_name("uploads"))]
                if stats
                else ["--no-statistics"]
            ),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
                conn.close()
            if proc.poll() is not None:
                raise RuntimeError(f"the agent exited: {state.with_name(state.name + '.log')}")
            time.sleep(0.2)
        else:
            raise RuntimeError("the agent did not serve within 180 s")
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def throughput(port: int, clients: int, seconds: float) -> float:
    """Requests/s of ``clients`` closed-loop threads, one keep-alive connection each."""
    counts = [0] * clients
    failures: list[int] = []
    start = threading.Barrier(clients + 1)
    deadline = [0.0]  # set just before the clients are let go

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start.wait()
        while time.perf_counter() < deadline[0]:
            conn.request("POST", "/invocations", BODY, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                failures.append(resp.status)
            counts[i] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed: {sorted(set(failures))}")
    return sum(counts) / (time.perf_counter() - began)


def _rounded(values: list[float], digits: int = 0) -> list[float]:
    return [round(v, digits) for v in values]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per round")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--checks", type=int, default=100, help="update checks per round")
    args = parser.parse_args()
    has_stats = importlib.util.find_spec(STATISTICS_MODULE) is not None
    met = True
    with tempfile.TemporaryDirectory(prefix="bench-edge-agent-") as tmp:
        root = Path(tmp)
        registry = build_edge_registry(root / "registry")
        bundle = build_bundle(
            tracking_uri=registry.db_uri,
            registry_uri=registry.db_uri,
            name="beacon",
            version="1",
            requested="models:/beacon/1",
            output=root / "beacon-1.tar.gz",
        ).path
        channel = root / "channel"
        (root / "uploads").mkdir()
        Channel(channel, root / "keys").init()
        Channel(channel, root / "keys").publish(bundle)
        trusted = channel / "metadata" / "1.root.json"

        modes = [False, True] if has_stats else [False]
        rates: dict[bool, list[float]] = {m: [] for m in modes}
        with contextlib.ExitStack() as stack:
            ports = {
                m: stack.enter_context(
                    agent_process(channel, trusted, root / f"device-{m}", stats=m)
                )[0]
                for m in modes
            }
            for m in modes:  # warm-up
                throughput(ports[m], args.clients, 1.0)
            # The machine's load drifts: each repetition alternates the agents in one-second
            # slices, and its ratio is on/off over its own slices.
            ratios: list[float] = []
            for _ in range(args.repeats):
                done = {m: 0.0 for m in modes}
                for _ in range(max(1, round(args.seconds))):
                    for m in modes:
                        done[m] += throughput(ports[m], args.clients, 1.0)
                for m in modes:
                    rates[m].append(done[m] / max(1, round(args.seconds)))
                if has_stats:
                    ratios.append(done[True] / done[False])
        off = statistics.median(rates[False])
        print(
            f"agent throughput, single-row dataframe_split, {args.clients} client threads, "
            f"{args.repeats} x {args.seconds:g} s each, alternated by 1 s slices:"
        )
        print(f"  statistics off: {off:.0f} requests/s (repetitions: {_rounded(rates[False])})")
        if has_stats:
            on = statistics.median(rates[True])
            ratio = statistics.median(ratios)
            met = ratio >= 0.9
            print(f"  statistics on:  {on:.0f} requests/s (repetitions: {_rounded(rates[True])})")
            print(f"  on/off: {ratio:.2f}x (median of the repetitions' {_rounded(ratios, 2)})")
            print(f"bar (on at least 0.9x off): {'met' if met else 'MISSED'}")
        else:
            print(f"  statistics on:  not measured ({STATISTICS_MODULE} is not installed)")

        with static_server(channel) as url:
            agent = Agent(
                channel=url, trusted_root=trusted, state_dir=root / "checker", port=free_port()
            )
            agent.check()  # installs release 1: from here on there is nothing new
            raw_state = root / "raw-device"
            raw_state.mkdir()
            _raw_check(url, raw_state, trusted.read_bytes())
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(args.repeats):
                for fn, out in (
                    (agent.check, ours),
                    (lambda: _raw_check(url, raw_state, trusted.read_bytes()), theirs),
                ):
                    began = time.perf_counter()
                    for _ in range(args.checks):
                        fn()
                    out.append((time.perf_counter() - began) / args.checks)
            assert agent.last_check is not None
            assert agent.last_check["result"] == "current"
        ours_ms, theirs_ms = statistics.median(ours) * 1e3, statistics.median(theirs) * 1e3
        print(
            f"update check, nothing new, over HTTP on 127.0.0.1 ({args.checks} x {args.repeats}):"
        )
        print(f"  python-tuf Updater.refresh(): {theirs_ms:.2f} ms")
        print(f"  the agent's check():          {ours_ms:.2f} ms ({ours_ms / theirs_ms:.2f}x)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
