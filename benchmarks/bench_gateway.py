"""Predictions through the steward gateway of a `steward-onprem` deployment (request logging on)
against the same MLflow scoring server called directly, in one run.

One registered scikit-learn model (LogisticRegression, 8 float columns) is deployed in-process
with `DeploymentHost.create(..., target="steward-onprem", config={"request_log": True})`: the
gateway (aiohttp) listens on a free port and proxies to one MLflow scoring server (uvicorn, one
worker) on a private port. The direct peer is that same scoring-server process, called on its
private port, so both targets share the model, the process and the machine.

`--clients` load-generator processes (not threads of this process) each keep one keep-alive HTTP
connection and POST `{"dataframe_split": ...}` to `/invocations` in a closed loop for `--seconds`
per round, recording every latency; every response must be HTTP 200 with predictions. Both
endpoints are warmed up first; rounds alternate direct/gateway so both see the same machine
noise. Per target: requests/s, p50 and p99 of each round, and their medians across rounds.

Bar (on-prem deployment target): through the gateway, at least 0.8x the direct throughput and at
most 1.5x the direct p99 (ratios of the medians across rounds), for every batch size measured.
Also printed: CPU time per request of the gateway, the scoring server and the load generator
(from /proc), and the number of records the request log received.

    python benchmarks/bench_gateway.py [--rounds 3] [--seconds 10] [--clients 4] [--rows 1,20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
from array import array
from contextlib import ExitStack, suppress
from pathlib import Path

import _common  # noqa: F401  (MLflow's telemetry off)

THROUGHPUT_BAR = 0.8
P99_BAR = 1.5
COLUMNS = [f"x{i}" for i in range(8)]
NAME = "bench"


# -- load generator (runs in its own processes) ----------------------------------------------------


def _client_process(conn) -> None:
    """One load-generator process: per command, one keep-alive connection in a closed loop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    while True:
        command = conn.recv()
        if command is None:
            return
        port, body, start_at, duration = command
        headers = {"Content-Type": "application/json"}
        latencies = array("d")
        failures = 0
        first_failure = ""
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        end = start_at + duration
        while time.monotonic() < start_at:
            time.sleep(0.001)
        while True:
            sent = time.perf_counter()
            if sent >= end:  # perf_counter and monotonic are both CLOCK_MONOTONIC on Linux
                break
            try:
                connection.request("POST", "/invocations", body, headers)
                response = connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                failures += 1
                first_failure = first_failure or f"{type(exc).__name__}: {exc}"
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
            done = time.perf_counter()
            if response.status != 200 or not payload.startswith(b'{"predictions"'):
                failures += 1
                first_failure = first_failure or f"HTTP {response.status}: {payload[:200]!r}"
                continue
            latencies.append(done - sent)
        finished = time.perf_counter()
        connection.close()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        conn.send((latencies.tobytes(), failures, first_failure, finished, cpu))


class LoadGenerator:
    """``clients`` processes started once (spawned: they import nothing heavy) and reused."""

    def __init__(self, clients: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes = []
        self.processes = []
        for _ in range(clients):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_client_process, args=(child,), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def run(self, port: int, body: bytes, seconds: float) -> dict:
        start_at = time.monotonic() + 0.2
        for pipe in self.pipes:
            pipe.send((port, body, start_at, seconds))
        results = [pipe.recv() for pipe in self.pipes]
        latencies: list[float] = []
        for raw, *_ in results:
            values = array("d")
            values.frombytes(raw)
            latencies.extend(values)
        elapsed = max(r[3] for r in results) - start_at
        return {
            "latencies": latencies,
            "throughput": len(latencies) / elapsed,
            "failures": sum(r[1] for r in results),
            "first_failure": next((r[2] for r in results if r[2]), ""),
            "elapsed": elapsed,
            "client_cpu": sum(r[4] for r in results),
        }

    def close(self) -> None:
        for pipe in self.pipes:
            with suppress(OSError):
                pipe.send(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


# -- the deployment -------------------------------------------------------------------------------


def build_registry(db: Path):
    """``bench`` v1: LogisticRegression on 8 float columns, with signature and input example.
    Returns the training frame (its rows are what the load sends)."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(200, len(COLUMNS))), columns=COLUMNS)
    y = (X["x0"] + 0.5 * X["x1"] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    try:
        with mlflow.start_run():
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(X, model.predict(X)),
                input_example=X.head(2),
                registered_model_name=NAME,
            )
    finally:
        mlflow.set_tracking_uri(None)
        if previous is not None:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    return X


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (its own threads; no children)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU time all processes on the machine spent (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
    return busy / os.sysconf("SC_CLK_TCK")


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _processes_mentioning(needles: list[str]) -> list[str]:
    """``pid cmdline`` of live processes whose command line or environment names a needle."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if b"multiprocessing.resource_tracker" in cmdline:
            continue  # this process's own helper; it exits with this process
        if any(n.encode() in cmdline or n.encode() in environ for n in needles) and _alive(
            int(entry)
        ):
            found.append(f"{entry} {cmdline.decode(errors='replace')[:160]}")
    return found


def _py_spy(pid: int, seconds: float, path: Path):
    """``py-spy record`` of ``pid`` as collapsed stacks. py-spy pauses the process for each sample:
    ``--nonblocking`` would disturb it less, but it drops the samples it reads mid-change, which
    under-counts Python code against system calls."""
    import shutil
    import subprocess

    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds) + 1),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


#: Leaf frames of a thread that waits (py-spy's own idle detection misses some of them here).
_WAITING = (
    "select (selectors.py",
    "EpollSelector.select",
    "Condition.wait",
    "Event.wait",
    "_worker (concurrent/futures/thread.py:81)",
)


def _summarize_profile(what: str, path: Path, top: int = 14) -> None:
    """Inclusive share of the hottest frames, and where the samples end (self time), over the
    samples that were working (not waiting for the network, a condition or a queue)."""
    import collections

    inclusive: collections.Counter = collections.Counter()
    leaf: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        if frames and frames[-1].startswith(_WAITING):
            continue
        n = int(count)
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        if frames:
            leaf[frames[-1]] += n
    if not total:
        return
    own = sum(n for frame, n in leaf.items() if "mlflow_steward" in frame)
    print(f"\n{what}: {total} working samples ({path})")
    print(f"  self time in mlflow_steward code: {100 * own / total:.1f}%")
    print("  inclusive (the event loop's own frames left out):")
    skip = (
        "runpy>",
        "run_forever",
        "run_until_complete",
        "_run_once",
        "Handle._run",
        "<module>",
        "_bootstrap",
        "Thread.run",
    )
    for frame, n in [(f, n) for f, n in inclusive.most_common() if not any(s in f for s in skip)][
        :top
    ]:
        print(f"    {100 * n / total:5.1f}%  {frame[:150]}")
    print("  self:")
    for frame, n in leaf.most_common(top):
        print(f"    {100 * n / total:5.1f}%  {frame[:150]}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _body(frame, rows: int) -> bytes:
    data = frame.head(rows).round(6).values.tolist()
    return json.dumps({"dataframe_split": {"columns": COLUMNS, "data": data}}).encode()


def measure(args: argparse.Namespace, stack: ExitStack) -> int:
    from mlflow_steward.deployment.onprem.ports import free_port

    home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="steward-bench-gw-")))
    os.environ["MLFLOW_STEWARD_HOME"] = str(home / "home")
    os.environ["MLFLOW_STEWARD_ACTOR"] = "bench"
    db = home / "mlflow.db"
    print(f"building the registry in {db}", flush=True)
    frame = build_registry(db)

    from mlflow_steward.config import StewardConfig
    from mlflow_steward.deployment.host import DeploymentHost
    from mlflow_steward.deployment.onprem.reqlog import read_request_log
    from mlflow_steward.lifecycle.session import StewardSession

    session = StewardSession(
        registry_uri=f"steward+sqlite:///{db}",
        tracking_uri=f"sqlite:///{db}",
        config=StewardConfig(),
    )
    host = DeploymentHost(session, progress=lambda line: print(f"  {line}", flush=True))
    port = free_port()
    config = {"port": port, "request_log": not args.no_request_log}
    if args.request_log_format:
        config["request_log_format"] = args.request_log_format
    pids: dict[str, int] = {}

    def cleanup() -> None:
        try:
            if host.store.get(NAME) is not None:
                host.delete(NAME)
        except Exception as exc:
            print(f"delete failed: {type(exc).__name__}: {exc}", flush=True)
        deadline = time.monotonic() + 15
        while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for what, pid in pids.items():  # only the processes this run started
            if _alive(pid):
                print(f"{what} (pid {pid}) still running after delete: terminating it")
                os.kill(pid, signal.SIGTERM)
        left = _processes_mentioning([str(home)])
        print(
            "processes left: " + ("none" if not left else "; ".join(left)),
            flush=True,
        )

    print(f"creating deployment {NAME!r} (steward-onprem, gateway port {port})", flush=True)
    stack.callback(cleanup)
    host.create(NAME, f"models:/{NAME}/1", target="steward-onprem", config=config)
    live = host.status(NAME)["live"]
    slot = live["slots"][0]
    pids["gateway"] = int(host.get(NAME).runtime["pid"])
    pids["scoring server"] = int(slot["pid"])
    ports = {"direct": int(slot["port"]), "gateway": port}
    print(
        f"gateway pid {pids['gateway']} on :{port} -> scoring server pid "
        f"{pids['scoring server']} on :{ports['direct']}",
        flush=True,
    )

    load = LoadGenerator(args.clients)
    stack.callback(load.close)
    sizes = [int(r) for r in args.rows.split(",")]
    gateway_requests = 0
    # rows -> target -> list of round results
    results: dict[int, dict[str, list[dict]]] = {}
    for rows in sizes:
        body = _body(frame, rows)
        for target in ("direct", "gateway"):
            warm = load.run(ports[target], body, args.warmup)
            if target == "gateway":
                gateway_requests += len(warm["latencies"]) + warm["failures"]
            if warm["failures"]:
                print(f"warm-up of {target} failed: {warm['first_failure']}")
                return 1
        results[rows] = {"direct": [], "gateway": []}
        for r in range(args.rounds):
            order = ("direct", "gateway") if r % 2 == 0 else ("gateway", "direct")
            for target in order:
                cpu0 = {what: _cpu_seconds(pid) for what, pid in pids.items()}
                busy0 = _machine_busy_seconds()
                out = load.run(ports[target], body, args.seconds)
                busy1 = _machine_busy_seconds()
                cpu1 = {what: _cpu_seconds(pid) for what, pid in pids.items()}
                n = len(out["latencies"])
                ours = sum(cpu1[w] - cpu0[w] for w in cpu0) + out["client_cpu"]
                # CPU (in cores) used by everything else meanwhile, steal included: noise.
                out["other_cores"] = max(0.0, busy1 - busy0 - ours) / out["elapsed"]
                out["cpu_ms"] = {
                    "gateway": (cpu1["gateway"] - cpu0["gateway"]) * 1e3 / max(n, 1),
                    "scoring": (cpu1["scoring server"] - cpu0["scoring server"]) * 1e3 / max(n, 1),
                    "clients": out["client_cpu"] * 1e3 / max(n, 1),
                }
                out["p50"] = _percentile(out["latencies"], 0.5) if n else float("nan")
                out["p99"] = _percentile(out["latencies"], 0.99) if n else float("nan")
                if target == "gateway":
                    gateway_requests += n + out["failures"]
                results[rows][target].append(out)
                print(
                    f"rows {rows:>3} round {r + 1}/{args.rounds} {target:<7} "
                    f"{out['throughput']:7.1f} req/s  p50 {out['p50'] * 1e3:6.2f} ms  "
                    f"p99 {out['p99'] * 1e3:6.2f} ms  {n} ok, {out['failures']} failed  "
                    f"CPU/req: gateway {out['cpu_ms']['gateway']:.2f} ms, scoring "
                    f"{out['cpu_ms']['scoring']:.2f} ms, clients {out['cpu_ms']['clients']:.2f} ms; "
                    f"other load {out['other_cores']:.2f} cores",
                    flush=True,
                )
                if out["failures"]:
                    print(f"  first failure: {out['first_failure']}", flush=True)

    if args.profile:
        rows = sizes[0]
        seconds = args.seconds
        out_dir = Path(args.profile)
        out_dir.mkdir(parents=True, exist_ok=True)
        spies = {}
        for what, pid in (("gateway", pids["gateway"]), ("scoring", pids["scoring server"])):
            path = out_dir / f"{what}-rows{rows}.collapsed"
            spies[what] = (path, _py_spy(pid, seconds, path))
        time.sleep(1.0)  # py-spy attaches
        extra = load.run(ports["gateway"], _body(frame, rows), seconds)
        gateway_requests += len(extra["latencies"]) + extra["failures"]
        print(
            f"\nprofiled gateway round (not counted): {extra['throughput']:.1f} req/s, "
            f"{len(extra['latencies'])} ok, {extra['failures']} failed",
            flush=True,
        )
        for what, (path, spy) in spies.items():
            spy.wait(timeout=seconds + 60)
            if path.is_file():
                _summarize_profile(what, path)

    # The request log flushes every second from a background thread of the gateway.
    time.sleep(2.5)
    log_dir = Path(os.environ["MLFLOW_STEWARD_HOME"]) / "deployments" / NAME / "requests"
    records = read_request_log(log_dir) if log_dir.is_dir() else []

    # -- report ---------------------------------------------------------------------------------
    med = statistics.median
    failures = sum(o["failures"] for per in results.values() for rs in per.values() for o in rs)
    print()
    print(
        f"## bench_gateway.py: {args.clients} clients, {args.rounds} rounds x {args.seconds:g} s "
        f"per target, request log {'OFF' if args.no_request_log else 'on'}"
    )
    print()
    print(
        "| rows | target | throughput (median round) | p50 | p99 | requests | failures "
        "| CPU/req gateway | CPU/req scoring | CPU/req clients |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    verdicts = []
    for rows, per in results.items():
        summary = {}
        for target, rounds in per.items():
            summary[target] = {
                "tps": med(o["throughput"] for o in rounds),
                "p50": med(o["p50"] for o in rounds),
                "p99": med(o["p99"] for o in rounds),
                "n": sum(len(o["latencies"]) for o in rounds),
                "failures": sum(o["failures"] for o in rounds),
                "cpu": {k: med(o["cpu_ms"][k] for o in rounds) for k in rounds[0]["cpu_ms"]},
            }
        tps_ratio = summary["gateway"]["tps"] / summary["direct"]["tps"]
        p50_ratio = summary["gateway"]["p50"] / summary["direct"]["p50"]
        p99_ratio = summary["gateway"]["p99"] / summary["direct"]["p99"]
        for target, s in summary.items():
            extra = ""
            if target == "gateway":
                extra = f" (**{tps_ratio:.2f}x**)"
            p50 = f"{s['p50'] * 1e3:.2f} ms" + (
                f" ({p50_ratio:.2f}x)" if target == "gateway" else ""
            )
            p99 = f"{s['p99'] * 1e3:.2f} ms" + (
                f" (**{p99_ratio:.2f}x**)" if target == "gateway" else ""
            )
            cpu = s["cpu"]
            print(
                f"| {rows} | {target} | {s['tps']:.1f} req/s{extra} | {p50} | {p99} | {s['n']} "
                f"| {s['failures']} | {cpu['gateway']:.2f} ms | {cpu['scoring']:.2f} ms "
                f"| {cpu['clients']:.2f} ms |"
            )
        verdicts.append((rows, tps_ratio, p99_ratio, per))
    print()
    ok = failures == 0
    for rows, tps_ratio, p99_ratio, per in verdicts:
        per_round = ", ".join(
            f"{g['throughput'] / d['throughput']:.2f}x/{g['p99'] / d['p99']:.2f}x"
            for d, g in zip(per["direct"], per["gateway"], strict=True)
        )
        paired = statistics.median(
            g["throughput"] / d["throughput"]
            for d, g in zip(per["direct"], per["gateway"], strict=True)
        )
        tps_ok = tps_ratio >= THROUGHPUT_BAR
        p99_ok = p99_ratio <= P99_BAR
        ok = ok and tps_ok and p99_ok
        print(
            f"rows {rows}: gateway/direct throughput {tps_ratio:.2f}x (bar >= {THROUGHPUT_BAR}x) "
            f"{'OK' if tps_ok else 'UNDER THE BAR'}; p99 {p99_ratio:.2f}x (bar <= {P99_BAR}x) "
            f"{'OK' if p99_ok else 'OVER THE BAR'}  [per round throughput/p99: {per_round}; "
            f"median of the paired throughput ratios {paired:.2f}x]"
        )
    print(
        f"request log ({log_dir}): {len(records)} records for {gateway_requests} requests sent "
        "through the gateway (warm-ups included)"
        + ("" if args.no_request_log else ("" if records else "  <- NO RECORDS"))
    )
    others = [o["other_cores"] for per in results.values() for rs in per.values() for o in rs]
    print(
        f"other load on the machine (other processes, hypervisor steal) during the rounds: "
        f"median {med(others):.2f} cores, "
        f"max {max(others):.2f} cores (of {os.cpu_count()})"
    )
    if failures:
        print(f"{failures} requests failed: the measurement is not valid")
    if not args.no_request_log and not records:
        ok = False
    print("bar met" if ok else "bar MISSED")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per target (alternated)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one round")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per target")
    parser.add_argument("--clients", type=int, default=4, help="load-generator processes")
    parser.add_argument(
        "--rows", default="1,20", help="batch sizes (rows per request), comma-separated"
    )
    parser.add_argument(
        "--request-log-format", choices=("jsonl", "parquet"), default=None, help="default: jsonl"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="after the measured rounds, one more gateway round (not counted) under py-spy "
        "(gateway and scoring server); collapsed stacks go to DIR and a summary is printed",
    )
    parser.add_argument(
        "--no-request-log",
        action="store_true",
        help="diagnosis only: the bar is defined with request logging on",
    )
    args = parser.parse_args()
    import logging
    import warnings

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    with ExitStack() as stack:
        return measure(args, stack)


if __name__ == "__main__":
    sys.exit(main())
