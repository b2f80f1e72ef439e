"""Helpers for the edge agent's tests: an agent as a real process, a channel changed atomically
for the agents reading it (so an attack is seen whole or not at all), the TUF attacks, and a
slow static server (``python -m tests.edge_agent_helpers PORT --bind HOST -d DIR``: Python's
``http.server`` that sends bundles slowly and notes each bundle download it starts in
``<DIR>.downloads``)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from mlflow_steward.deployment.onprem.ports import free_port
from tests.edge_helpers import COLUMNS

BIN = Path(sys.executable).parent
#: Rows whose predictions tell v1 (x0 > 0) from v2 (the opposite).
ROWS = [[1.5, 0.0, 0.0], [-1.5, 0.0, 0.0], [0.3, 2.0, -1.0], [-0.7, -1.0, 1.0]]
PAUSE_ENV = "MLFLOW_STEWARD_EDGE_AGENT_PAUSE"


def split_payload(rows: list[list[float]] = ROWS) -> dict[str, Any]:
    return {"dataframe_split": {"columns": COLUMNS, "data": rows}}


class AgentProcess:
    """``steward edge agent`` as a real process on a free port of 127.0.0.1."""

    def __init__(
        self,
        channel: str,
        trusted_root: Path,
        state: Path,
        *,
        group: str | None = None,
        interval: str = "1s",
        uploads: Path | str | None = None,
    ) -> None:
        self.channel, self.trusted_root, self.state = channel, trusted_root, state
        self.group, self.interval, self.uploads = group, interval, uploads
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = state.with_name(state.name + ".log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = requests.Session()

    def start(self, pause: str | None = None) -> AgentProcess:
        env = {k: v for k, v in os.environ.items() if k != PAUSE_ENV}
        env["MLFLOW_DISABLE_TELEMETRY"] = "true"
        if pause:
            env[PAUSE_ENV] = pause
        argv = [
            str(BIN / "steward"),
            "edge",
            "agent",
            "--channel",
            self.channel,
            "--trusted-root",
            str(self.trusted_root),
            "--state-dir",
            str(self.state),
            "--port",
            str(self.port),
            "--interval",
            self.interval,
            "--jitter",
            "0.2",
        ]
        if self.uploads is None:
            argv += ["--no-statistics"]
        else:  # windows of a second: the tests read what was uploaded
            argv += ["--statistics", "--uploads", str(self.uploads), "--stats-window", "1s"]
        if self.group:
            argv += ["--group", self.group]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    # -- asking it ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self.http.get(f"{self.url}/status", timeout=10).json()

    def predict(self, payload: Any = None, **kwargs: Any) -> tuple[int, Any, str | None]:
        """``(HTTP status, predictions or error, version that answered)``."""
        if "data" not in kwargs:
            kwargs["json"] = split_payload() if payload is None else payload
        resp = self.http.post(f"{self.url}/invocations", timeout=30, **kwargs)
        body = resp.json()
        answer = body.get("predictions") if resp.status_code == 200 else body
        return resp.status_code, answer, resp.headers.get("X-Steward-Model-Version")

    def events(self) -> list[dict[str, Any]]:
        path = self.state / "events.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_for(
        self, what: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 90
    ) -> dict[str, Any]:
        """Poll ``/status`` until ``predicate`` holds; fail with the agent's log otherwise."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the agent exited ({self.proc.returncode}): {self.tail()}")
            with contextlib.suppress(requests.RequestException, ValueError):
                status = self.status()
                if predicate(status):
                    return status
            time.sleep(0.1)
        raise AssertionError(f"agent never {what}; last status {status}; log: {self.tail()}")

    def wait_serving(self, version: str, timeout: float = 90) -> dict[str, Any]:
        return self.wait_for(
            f"served v{version}",
            lambda s: (s.get("installed") or {}).get("version") == version,
            timeout,
        )

    def wait_checked_since(self, since: str, timeout: float = 60) -> dict[str, Any]:
        """Wait for a check that started after the UTC time ``since`` (ISO) and finished."""
        return self.wait_for(
            f"checked after {since}",
            lambda s: (s.get("last_check") or {}).get("time", "") > since,
            timeout,
        )

    def wait_file(self, path: Path, timeout: float = 90) -> None:
        self.wait_for(f"wrote {path.name}", lambda s: path.exists(), timeout)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- stopping it -------------------------------------------------------------------------

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.http.close()
        self.http = requests.Session()

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 30 s; the exit code of the SIGTERM (None if killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.terminate()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self.http.close()


@contextlib.contextmanager
def agents(*made: AgentProcess) -> Iterator[tuple[AgentProcess, ...]]:
    """Start the agents; stop every one afterwards."""
    try:
        for agent in made:
            agent.start()
        yield made
    finally:
        for agent in made:
            agent.stop()


def utc_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds")


# -- what the agents answer --------------------------------------------------------------------

#: One client's answers: ``(HTTP status or 0 for no answer, predictions, version that answered)``.
Answers = dict[tuple[str | None, int], list[tuple[int, Any, str | None]]]


def own_predictions(bundles: dict[str, Path], root: Path) -> dict[str, list[int]]:
    """Each of v1's and v2's own predictions on ROWS: its model loaded from its bundle, in this
    process (not through an agent)."""
    import mlflow.pyfunc
    import pandas as pd

    from mlflow_steward.deployment.edge.bundle import unpack

    expected = {}
    for version in ("1", "2"):
        unpack(bundles[version], root / f"unpacked-{version}")
        model = mlflow.pyfunc.load_model(str(root / f"unpacked-{version}" / "bundle" / "model"))
        expected[version] = [int(p) for p in model.predict(pd.DataFrame(ROWS, columns=COLUMNS))]
    assert expected["1"] != expected["2"]
    return expected


def switch_under_load(both: tuple[AgentProcess, ...], publish: Callable[[], None]) -> Answers:
    """Two client threads per agent send ROWS without pause while ``publish()`` publishes v2;
    once every agent serves v2 (and a second more), the clients stop. Each client's answers, in
    the order it got them."""
    answers: Answers = {}
    stop = threading.Event()

    def client(agent: AgentProcess, n: int) -> None:
        mine = answers.setdefault((agent.group, n), [])
        with requests.Session() as http:
            while not stop.is_set():
                try:
                    resp = http.post(f"{agent.url}/invocations", json=split_payload(), timeout=30)
                    body = resp.json().get("predictions")
                    version = resp.headers.get("X-Steward-Model-Version")
                    mine.append((resp.status_code, body, version))
                except requests.RequestException as exc:
                    mine.append((0, repr(exc), None))

    clients = [threading.Thread(target=client, args=(a, n)) for a in both for n in range(2)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(1)
        publish()
        for agent in both:
            agent.wait_serving("2")
        time.sleep(1)
    finally:
        stop.set()
        for thread in clients:
            thread.join(60)
    assert len(answers) == 2 * len(both)
    return answers


def assert_switched_once(answers: Answers, expected: dict[str, list[int]]) -> None:
    """No request failed, each answer is the answering version's own predictions, and each
    client's answers went from v1 to v2 once, never back."""
    for who, got in answers.items():
        failed = [a for a in got if a[0] != 200]
        assert failed == [], (who, failed[:5])
        assert all(body == expected[v] for _, body, v in got)
        versions = [v for _, _, v in got]
        switch = versions.index("2")
        assert switch > 0
        assert set(versions[:switch]) == {"1"}
        assert set(versions[switch:]) == {"2"}


def rows_sent(answers: Answers, before: dict[str | None, int]) -> dict[str, dict[str, int]]:
    """The rows each group's agent answered per version: ``before`` (rows answered by v1 before
    the clients started) and the clients' requests of len(ROWS) rows each."""
    sent = {str(group): {"1": rows, "2": 0} for group, rows in before.items()}
    for (group, _n), got in answers.items():
        for _, _, version in got:
            sent[str(group)][str(version)] += len(ROWS)
    return sent


def assert_statistics_arrive(uploads: str, sent: dict[str, dict[str, int]]) -> None:
    """The rows uploaded to ``uploads`` per group and version become ``sent`` (windows close and
    upload in the agents' loop: none lost, none twice), and each device reports v2 healthy."""
    from mlflow_steward.deployment.edge.stats import read_devices, read_uploads

    def counted() -> dict[str, dict[str, int]]:
        return {
            group: {
                version: read_uploads(uploads, "beacon", version, group=group).rows
                for version in versions
            }
            for group, versions in sent.items()
        }

    deadline = time.monotonic() + 60
    while counted() != sent and time.monotonic() < deadline:
        time.sleep(0.5)
    assert counted() == sent
    reports = [(d["group"], d["model"], d["version"], d["health"]) for d in read_devices(uploads)]
    assert reports == [(group, "beacon", "2", "healthy") for group in sorted(sent)]


# -- changing a channel under running agents ---------------------------------------------------


@contextlib.contextmanager
def staged(channel: Path) -> Iterator[Path]:
    """A copy of ``channel`` to change; afterwards its new and changed files are put into the
    channel, ``metadata/timestamp.json`` (what readers start from) last, each by a rename. An
    agent sees the channel before or after the change, never half of it."""
    stage = channel.with_name(channel.name + ".stage")
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(channel, stage)
    yield stage
    timestamp = Path("metadata") / "timestamp.json"
    files = sorted(p.relative_to(stage) for p in stage.rglob("*") if p.is_file())
    for rel in [*(f for f in files if f != timestamp), timestamp]:
        src, dst = stage / rel, channel / rel
        if dst.is_file() and dst.read_bytes() == src.read_bytes():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.staged")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    shutil.rmtree(stage)


def stored_bundle(channel: Path, version: str) -> Path:
    return next((channel / "targets" / "beacon").glob(f"*.{version}.tar.gz"))


def sign_targets_with(channel: Path, key_file: Path) -> None:
    """Sign the channel's newest targets metadata again, with ``key_file``'s key only."""
    from tuf.api.metadata import Metadata
    from tuf.api.serialization.json import JSONSerializer

    from mlflow_steward.deployment.edge import keys as keyfiles

    meta = channel / "metadata"
    newest = max(int(p.name.split(".")[0]) for p in meta.glob("*.targets.json"))
    path = meta / f"{newest}.targets.json"
    targets = Metadata.from_file(str(path))
    targets.signatures.clear()
    targets.sign(keyfiles._load(key_file))
    path.write_bytes(targets.to_bytes(JSONSerializer()))


def with_broken_example(src: Path, dst: Path) -> Path:
    """``src`` with its input examples naming columns the model does not have, the manifest's
    hashes updated to match: a bundle that passes TUF and the manifest, loads, and fails its
    health check."""
    with tarfile.open(src) as tin:
        members = [(m, tin.extractfile(m).read()) for m in tin.getmembers() if m.isfile()]
    manifest = json.loads(dict((m.name, d) for m, d in members)["bundle/manifest.json"])
    wrong = {"columns": ["a", "b", "c"], "data": [[1.0, 2.0, 3.0]]}
    examples = {
        "model/input_example.json": wrong,
        "model/serving_input_example.json": {"dataframe_split": wrong},
    }
    with tarfile.open(dst, "w:gz") as tout:
        for member, data in members:
            rel = member.name.removeprefix("bundle/")
            if rel == "manifest.json":
                continue
            if rel in examples:
                data = json.dumps(examples[rel]).encode()
                manifest["files"][rel] = hashlib.sha256(data).hexdigest()
            member.size = len(data)
            tout.addfile(member, io.BytesIO(data))
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("bundle/manifest.json")
        info.size = len(data)
        tout.addfile(info, io.BytesIO(data))
    return dst


# -- a slow static server ----------------------------------------------------------------------


def _serve_slowly() -> None:
    import argparse
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("-d", "--directory", required=True)
    args = parser.parse_args()
    notes = Path(args.directory + ".downloads")

    class Slow(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *a: Any) -> None:
            pass

        def copyfile(self, source: Any, outputfile: Any) -> None:
            if "/targets/" not in self.path:
                super().copyfile(source, outputfile)
                return
            with open(notes, "a") as f:
                f.write(self.path + "\n")
            while chunk := source.read(256):
                outputfile.write(chunk)
                outputfile.flush()
                time.sleep(0.1)

    handler = partial(Slow, directory=args.directory)
    with ThreadingHTTPServer((args.bind, args.port), handler) as httpd:
        httpd.serve_forever()


if __name__ == "__main__":
    _serve_slowly()
