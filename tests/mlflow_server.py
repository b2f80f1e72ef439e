"""Run ``mlflow server`` (with or without ``--app-name steward``) as a child process on a free
127.0.0.1 port: started, waited for until healthy, always stopped with its workers.

Steward's own tests and benchmarks use it; it is not part of the installed package.
Standard library only: importing it costs nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlflow_steward.deployment.onprem.ports import free_port
from mlflow_steward.env import ACTOR_ENV, CONFIG_ENV

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the uvicorn supervisor and its workers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.proc.wait(timeout=20)
        else:
            self.kill(signal.SIGKILL)  # workers left behind by a dead supervisor


def _wait_healthy(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited ({server.proc.returncode}):\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"mlflow server not healthy after {timeout:.0f}s:\n{server.log_tail()}")


@contextlib.contextmanager
def mlflow_server(
    backend_uri: str,
    workdir: Path,
    *,
    app: str | None = "steward",
    config: Path | None = None,
    env: dict[str, str] | None = None,
    workers: int = 1,
    extra_args: tuple[str, ...] = (),
    artifacts: Path | str | None = None,
    jobs: bool = False,
    timeout: float = 120,
) -> Iterator[Server]:
    """``mlflow server [--app-name APP] --backend-store-uri ...`` on a free loopback port.

    ``config`` is the server's ``steward.yaml``; ``env`` adds environment variables (identity
    settings, basic-auth configuration); client-side ``MLFLOW_TRACKING_*``/``MLFLOW_REGISTRY_*``
    variables of this process are not passed on. ``jobs=False`` switches off MLflow's job
    runner (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION``), seven extra processes that registry
    governance does not use.
    """
    port = free_port()
    artifacts = artifacts or workdir / "artifacts"
    if isinstance(artifacts, Path):  # else a URI, e.g. s3://bucket/prefix
        artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [
        MLFLOW,
        "server",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra_args,
    ]
    if not any(a.startswith("--gunicorn-opts") for a in extra_args):
        cmd += ["--workers", str(workers)]
    if app:
        cmd += ["--app-name", app]
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_TRACKING_", "MLFLOW_REGISTRY_"))
    }
    full_env.pop(ACTOR_ENV, None)
    full_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "true" if jobs else "false"
    if config is not None:
        full_env[CONFIG_ENV] = str(config)
    full_env.update(env or {})
    log = workdir / f"server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    try:
        _wait_healthy(server, timeout)
        yield server
    finally:
        server.stop()
