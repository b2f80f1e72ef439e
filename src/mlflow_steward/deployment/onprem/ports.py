"""What the on-prem client, the gateway and the scoring servers share about processes and ports:
free and busy ports, a child that dies with its parent, whether a gateway is alive, a log's last
lines, and the gateway's module name and admin header. Standard library only, so the deploy
client imports neither aiohttp nor the gateway."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
from pathlib import Path

#: What the gateway runs as (``python -m ...``); in that process ``__name__`` is ``__main__``.
GATEWAY_MODULE = "mlflow_steward.deployment.onprem.gateway"
#: The header carrying the deployment's admin token to the gateway's admin API.
TOKEN_HEADER = "X-Steward-Admin-Token"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def die_with_parent(parent_pid: int) -> None:
    """Get SIGTERM when ``parent_pid`` dies, even by SIGKILL (Linux; survives exec)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # it died before the call above
        os.kill(os.getpid(), signal.SIGTERM)


def gateway_alive(pid: int | None, name: str) -> bool:
    """Whether ``pid`` is the running gateway of deployment ``name`` (Linux ``/proc``)."""
    if not pid:
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return GATEWAY_MODULE.encode() in argv and name.encode() in argv


def log_tail(path: Path | None, lines: int = 6) -> str:
    """The last non-blank lines of a log file, joined with " | " (empty if unreadable)."""
    try:
        text = path.read_text(errors="replace") if path else ""
    except OSError:
        return ""
    return " | ".join([line for line in text.strip().splitlines() if line.strip()][-lines:])
