"""The stable steward gateway of one on-prem deployment (its own long-running process).

It owns the deployment's port and supervises MLflow scoring servers ("slots") on private ports:

* **blue/green**: a new version starts on a private port and must pass the health gate (``/ping``,
  then a prediction on the model's logged input example) before the gateway switches to it in one
  step; requests in flight finish on the old slot, which stops after the drain time (and, when
  ``watch`` is set, after the new version's error rate has been watched for that long);
* **canary**: a weight splits requests between the stable and the new slot until promoted or
  rolled back;
* **automatic rollback**: a failed health gate never takes traffic; a new version whose error rate
  (5xx and unreachable) over ``error_rate_window`` exceeds ``error_rate_max`` is switched back to the
  previous one and the deployment records why;
* **request logging**: every request and response, with ``X-Request-Id`` (kept when the client sends
  one) and a timestamp, goes to rotating JSONL or Parquet files, the model's input columns as
  columns (``reqlog.py``).

The admin API (status, rollout, promote, rollback, shutdown) listens on a separate port on
``admin_host`` and needs the deployment's admin token. The gateway reads and writes the deployment's
state in the registry database, so after a restart it serves what was recorded.
This module (the process: slots started, requests routed, state restored) imports no MLflow; the
rollouts and the error watch are in ``rollouts.py``, the admin API in ``admin.py``, a slot in
``slots.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from mlflow_steward import compat
from mlflow_steward.deployment.onprem.admin import AdminAPI
from mlflow_steward.deployment.onprem.ports import (
    free_port,
    gateway_alive,
    log_tail,
)
from mlflow_steward.deployment.onprem.reqlog import RequestLog, read_signature
from mlflow_steward.deployment.onprem.rollouts import Rollouts
from mlflow_steward.deployment.onprem.slots import Slot, SlotFailed, is_model_error, scoring_error
from mlflow_steward.records.deployments import DeploymentStore

_logger = logging.getLogger("mlflow_steward.gateway")

REQUEST_ID_HEADER = "X-Request-Id"
VERSION_HEADER = "X-Steward-Model-Version"
SERVING_INPUT_EXAMPLE = "serving_input_example.json"
#: Hop-by-hop headers a proxy must not forward.
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}


class Gateway(Rollouts, AdminAPI):
    def __init__(self, name: str, registry_uri: str) -> None:
        self.name = name
        self.store = DeploymentStore.for_registry(registry_uri)
        info = self.store.require(name)
        self.info = info
        o = info.options
        self.options = o
        self.host: str = o["host"]
        self.port: int = int(o["port"])
        self.admin_host: str = o.get("admin_host") or "127.0.0.1"
        self.admin_port: int = int(info.runtime["admin_port"])
        self.token: str = info.runtime["admin_token"]
        self.state_dir = Path(info.runtime["state_dir"])
        self.window = float(o["error_rate_window"])
        #: (slot, weight) pairs; replaced as a whole, so a switch is one assignment.
        self.routes: list[tuple[Slot, float]] = []
        self.stable: Slot | None = None
        self.canary: Slot | None = None
        self.retiring: list[Slot] = []
        self.stops: dict[int, asyncio.Task] = {}
        self.phase = "starting"
        self.reason: str | None = None
        self.events: collections.deque[str] = collections.deque(maxlen=200)
        self.event_count = 0  # lines said so far (the deque keeps the last 200)
        self.lock = asyncio.Lock()
        self.session: aiohttp.ClientSession | None = None
        self.reqlog: RequestLog | None = None
        self.stopping = asyncio.Event()
        self.watch_until: float = 0.0
        #: The slot served before the last switch, kept warm while it drains or is watched.
        self.previous: Slot | None = None

    # -- progress and state ----------------------------------------------------------------------

    def say(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        self.events.append(line)
        self.event_count += 1
        _logger.info("%s: %s", self.name, message)
        print(line, flush=True)

    def traffic(self) -> dict[str, int]:
        return {slot.version: round(weight * 100) for slot, weight in self.routes}

    def slots_runtime(self) -> list[dict[str, Any]]:
        return [
            {
                "version": slot.version,
                "model_path": slot.model_path,
                "weight": round(weight * 100),
                "role": "canary" if slot is self.canary else "stable",
            }
            for slot, weight in self.routes
        ]

    async def save_runtime(self, **row: Any) -> None:
        """Record what is served (the gateway owns version, traffic and runtime), off the loop."""
        slots = self.slots_runtime()
        traffic = self.traffic()
        version = self.stable.version if self.stable else None

        def write() -> None:
            runtime = dict(self.store.require(self.name).runtime)
            runtime.update(pid=os.getpid(), admin_port=self.admin_port, slots=slots)
            extra = {"version": version} if version else {}
            self.store.update_row(None, self.name, runtime=runtime, traffic=traffic, **extra, **row)

        await asyncio.to_thread(write)

    # -- slots -------------------------------------------------------------------------------

    async def start_slot(self, version: str, model_path: str) -> Slot:
        """Start a scoring server for ``version`` and pass it through the health gate."""
        port = free_port()
        log_path = self.state_dir / "logs" / f"v{version}-{port}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        slot = Slot(version=version, model_path=model_path, port=port, log_path=log_path)
        command = [
            sys.executable,
            "-m",
            "mlflow_steward.deployment.onprem.scoring",
            "--model-path",
            model_path,
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--workers",
            str(self.options["workers"]),
            "--env-manager",
            self.options["env_manager"],
        ]
        self.say(f"starting scoring server for v{version} on private port {port}")
        with open(log_path, "ab") as log:
            # The child asks for SIGTERM on the gateway's death itself (scoring.py): a
            # preexec_fn is unsafe in a process with threads.
            slot.process = subprocess.Popen(
                [*command, "--parent-pid", str(os.getpid())], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            await self._wait_ready(slot)
            await self._health_gate(slot)
        except SlotFailed:
            await self.stop_slot(slot, drain=0)
            raise
        self.say(f"v{version} passed the health gate")
        if self.reqlog is not None:  # its input columns are logged typed by its signature
            self.reqlog.set_signature(version, read_signature(model_path))
        return slot

    async def _wait_ready(self, slot: Slot) -> None:
        deadline = time.monotonic() + float(self.options["start_timeout"])
        assert self.session is not None
        last_line, next_report = "", time.monotonic() + 3
        while time.monotonic() < deadline:
            if time.monotonic() >= next_report:
                # Show what the server is busy with (building a virtualenv, loading the model).
                line = log_tail(slot.log_path, lines=1)[:160]
                if line and line != last_line:
                    self.say(f"v{slot.version} starting: {line}")
                last_line, next_report = line, time.monotonic() + 3
            code = slot.process.poll() if slot.process else None
            if code is not None:
                raise SlotFailed(
                    f"v{slot.version} failed to load: its scoring server exited with code {code}: "
                    f"{log_tail(slot.log_path)}"
                )
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with self.session.get(
                    f"{slot.url}/ping", timeout=aiohttp.ClientTimeout(total=2)
                ) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.25)
        raise SlotFailed(
            f"v{slot.version} did not answer /ping within {self.options['start_timeout']:.0f}s "
            f"(start_timeout): {log_tail(slot.log_path)}"
        )

    async def _health_gate(self, slot: Slot) -> None:
        example = Path(slot.model_path) / SERVING_INPUT_EXAMPLE
        if not example.is_file():
            if self.options["require_input_example"]:
                raise SlotFailed(
                    f"v{slot.version} has no logged input example, so its health check cannot "
                    "make a prediction (log the model with input_example=..., or set "
                    "require_input_example=false)"
                )
            self.say(f"v{slot.version} has no input example: health gate checked /ping only")
            return
        assert self.session is not None
        self.say(f"health check: a prediction on v{slot.version}'s input example")
        try:
            async with self.session.post(
                f"{slot.url}/invocations",
                data=example.read_bytes(),
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=float(self.options["health_timeout"])),
            ) as resp:
                body = await resp.text()
                if resp.status != 200:
                    raise SlotFailed(
                        f"v{slot.version} failed its health check: a prediction on its input "
                        f"example returned HTTP {resp.status}: {scoring_error(body)}"
                    )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise SlotFailed(
                f"v{slot.version} failed its health check: {type(exc).__name__}: {exc}"
            ) from exc

    async def stop_slot(self, slot: Slot, *, drain: float) -> None:
        """Stop ``slot`` once its requests in flight are done (after at least ``drain`` s)."""
        await asyncio.sleep(max(drain, 0.0))
        patience = time.monotonic() + 60  # requests in flight get up to a minute more
        while slot.inflight and time.monotonic() < patience:
            await asyncio.sleep(0.05)
        proc = slot.process
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        for _ in range(100):
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.05)
        else:
            proc.kill()
            proc.wait()
        self.say(f"stopped v{slot.version} (port {slot.port})")

    def _retire(self, slot: Slot, delay: float) -> None:
        """Stop ``slot`` after ``delay`` (and its requests in flight), unless it is brought back
        first (:meth:`_unretire`)."""
        self.retiring.append(slot)

        async def later() -> None:
            await asyncio.sleep(max(delay, 0.0))
            if slot not in self.retiring:
                return  # switched back to meanwhile
            self.retiring.remove(slot)
            await self.stop_slot(slot, drain=0)

        self.stops[id(slot)] = asyncio.get_running_loop().create_task(later())

    def _unretire(self, slot: Slot) -> bool:
        """Take ``slot`` back from retirement if its process still runs; False otherwise."""
        if slot not in self.retiring or slot.process is None or slot.process.poll() is not None:
            return False
        self.retiring.remove(slot)
        task = self.stops.pop(id(slot), None)
        if task is not None:
            task.cancel()
        return True

    # -- serving -------------------------------------------------------------------------------

    def choose(self) -> Slot:
        routes = self.routes
        if len(routes) == 1:
            return routes[0][0]
        pick = random.random()
        for slot, weight in routes:
            pick -= weight
            if pick < 0:
                return slot
        return routes[-1][0]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self.routes:
            return web.json_response(
                {
                    "error_code": "TEMPORARILY_UNAVAILABLE",
                    "message": f"deployment {self.name} "
                    f"is {self.phase}: {self.reason or 'no version is serving'}",
                },
                status=503,
            )
        request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        started = time.perf_counter()
        slot = self.choose()
        failures = 0
        assert self.session is not None
        while True:
            current = slot
            current.inflight += 1
            try:
                async with self.session.request(
                    request.method, current.url + request.path_qs, data=body, headers=headers
                ) as resp:
                    payload = await resp.read()
                    status = resp.status
                    out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
                break
            except TimeoutError:
                status = 504
                payload = json.dumps(
                    {
                        "error_code": "DEADLINE_EXCEEDED",
                        "message": f"v{current.version} did not answer within "
                        f"{self.options['request_timeout']:g}s (request_timeout)",
                    }
                ).encode()
                out_headers = {"Content-Type": "application/json"}
                break
            except aiohttp.ClientConnectionError as exc:
                # Not answered (a pooled connection the server had closed, or a server that
                # stopped): predictions have no side effects, so try again, on another live
                # slot if there is one.
                failures += 1
                alive = [s for s, _ in self.routes if s.process and s.process.poll() is None]
                if failures > 2 or not alive:
                    current.note(False, time.monotonic(), self.window)
                    return web.json_response(
                        {
                            "error_code": "TEMPORARILY_UNAVAILABLE",
                            "message": f"v{current.version} did not answer: {exc}",
                        },
                        status=503,
                        headers={REQUEST_ID_HEADER: request_id},
                    )
                others = [s for s in alive if s is not current]
                slot = others[0] if others else alive[0]
            finally:
                current.inflight -= 1
        latency_ms = (time.perf_counter() - started) * 1000.0
        if request.path == "/invocations":
            slot.note(not is_model_error(status, payload), time.monotonic(), self.window)
            if self.reqlog is not None:
                self.reqlog.add(
                    request_id=request_id,
                    version=slot.version,
                    status=status,
                    latency_ms=latency_ms,
                    content_type=request.headers.get("Content-Type"),
                    request=body,
                    response=payload,
                )
        out_headers[REQUEST_ID_HEADER] = request_id
        out_headers[VERSION_HEADER] = slot.version
        return web.Response(body=payload, status=status, headers=out_headers)

    # -- lifecycle -----------------------------------------------------------------------------

    async def serve(self) -> int:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, keepalive_timeout=4)
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=float(self.options["request_timeout"])),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        )
        if self.options["request_log"]:
            directory = self.options.get("request_log_dir") or str(self.state_dir / "requests")
            self.reqlog = RequestLog(
                directory,
                deployment=self.name,
                fmt=self.options["request_log_format"],
                payload_sample=float(self.options["payload_sample"]),
                rotate_rows=int(self.options["rotate_rows"]),
                rotate_seconds=float(self.options["rotate_seconds"]),
            )
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        admin = web.Application(middlewares=[self._auth])
        admin.router.add_get("/status", self.admin_status)
        admin.router.add_post("/rollout", self.admin_rollout)
        admin.router.add_post("/promote", self.admin_promote)
        admin.router.add_post("/rollback", self.admin_rollback)
        admin.router.add_post("/shutdown", self.admin_shutdown)
        runners = []
        code = 0
        try:
            admin_runner = web.AppRunner(admin, access_log=None)
            await admin_runner.setup()
            runners.append(admin_runner)
            try:
                await web.TCPSite(admin_runner, self.admin_host, self.admin_port).start()
            except OSError:
                # The recorded admin port is taken (e.g. after a reboot): take a free one; it is
                # recorded with the runtime state, where clients look it up.
                self.admin_port = free_port()
                await web.TCPSite(admin_runner, self.admin_host, self.admin_port).start()
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            runners.append(runner)
            try:
                await web.TCPSite(runner, self.host, self.port, reuse_address=True).start()
            except OSError as exc:
                raise SlotFailed(
                    f"port {self.port} on {self.host} is not free ({exc.strerror})"
                ) from exc
            self.say(f"gateway listening on http://{self.host}:{self.port}")
            await self._restore()
            watcher = asyncio.get_running_loop().create_task(self.watch_errors())
            await self.stopping.wait()
            watcher.cancel()
        except SlotFailed as exc:
            self.phase, self.reason = "failed", str(exc)
            self.say(f"failed: {exc}")
            await asyncio.to_thread(self._record_failure, str(exc))
            code = 1
        finally:
            # Stop taking requests first (those in flight finish), then stop every scoring
            # server at once: one after the other could outlast a service manager's stop timeout.
            for r in reversed(runners):
                await r.cleanup()
            for task in self.stops.values():
                task.cancel()
            slots = {id(s): s for s in [s for s, _ in self.routes] + list(self.retiring)}
            await asyncio.gather(*(self.stop_slot(s, drain=0) for s in slots.values()))
            if code == 0:
                await asyncio.to_thread(self._record_stopped)
            if self.reqlog is not None:
                self.reqlog.close()
            await self.session.close()
        return code

    async def _restore(self) -> None:
        """Start the recorded slots (first start, or after a restart of the gateway)."""
        info = self.store.require(self.name)
        slots = info.runtime.get("slots") or []
        if not slots:
            raise SlotFailed("the deployment's recorded state names no version to serve")
        started: list[tuple[Slot, float]] = []
        try:
            for entry in slots:
                slot = await self.start_slot(str(entry["version"]), entry["model_path"])
                started.append((slot, float(entry.get("weight", 100)) / 100))
        except SlotFailed:
            for slot, _ in started:
                await self.stop_slot(slot, drain=0)
            raise
        roles = [entry.get("role") for entry in slots]
        self.routes = started
        if "stable" in roles:
            self.stable = started[roles.index("stable")][0]
        else:  # recorded before roles were: the larger weight was the stable one
            self.stable = max(started, key=lambda sw: sw[1])[0]
        others = [s for s, _ in started if s is not self.stable]
        self.canary = others[0] if others else None
        phase = "canary" if self.canary else "serving"
        # Recorded before /status says so: `steward deploy create` returns, and records the
        # runtime it reads, as soon as the phase is serving. Written after, the gateway's pid
        # could be lost to that record, and `delete` would then not wait for the gateway to stop
        # (nor signal it), returning before the request log was written.
        await self.save_runtime(status=phase, reason=None)
        self.phase = phase
        self.say(
            f"serving v{self.stable.version}"
            + (f" with canary v{self.canary.version}" if self.canary else "")
        )

    def _record_stopped(self) -> None:
        info = self.store.get(self.name)
        if info is not None and info.runtime.get("pid") == os.getpid():
            self.store.update_row(None, self.name, status="stopped", reason="gateway stopped")

    def _record_failure(self, reason: str) -> None:
        info = self.store.get(self.name)
        # A second gateway that could not take the port must not mark a serving one failed.
        owner = info.runtime.get("pid") if info is not None else None
        if info is not None and (
            owner in (None, os.getpid()) or not gateway_alive(owner, self.name)
        ):
            self.store.update_row(None, self.name, status="failed", reason=reason)


def run(name: str, registry_uri: str) -> int:
    logging.basicConfig(level=logging.WARNING)
    compat.require_tested_mlflow(f"the on-prem gateway of {name!r}", registry_uri)
    gateway = Gateway(name, registry_uri)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gateway.stopping.set)
    try:
        return loop.run_until_complete(gateway.serve())
    finally:
        loop.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlflow_steward.deployment.onprem.gateway")
    parser.add_argument("name")
    parser.add_argument("--registry-uri", required=True)
    args = parser.parse_args(argv)
    sys.exit(run(args.name, args.registry_uri))


if __name__ == "__main__":
    main()
