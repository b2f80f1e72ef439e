"""Unit files for running an on-prem deployment as a service on a real host.

One unit per deployment runs its gateway in the foreground. The gateway supervises the scoring
servers itself (it starts each version on a private port for a blue/green switch), so they are
its children in the unit's control group and stop with it; systemd restarts the gateway, which
serves again what the registry database records.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from mlflow_steward.env import CONFIG_ENV, HOME_ENV

#: Environment passed through to the service when set here (no secrets: see EnvironmentFile).
PASSED_ENV = (CONFIG_ENV, HOME_ENV, "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def unit_name(deployment: str) -> str:
    return f"steward-deploy-{deployment}.service"


def render_unit(deployment: str, command: list[str], *, workdir: str, user: str | None) -> str:
    env_lines = [
        f'Environment="{key}={os.environ[key]}"' for key in PASSED_ENV if os.environ.get(key)
    ]
    lines = [
        "[Unit]",
        f"Description=mlflow-steward on-prem deployment {deployment} (gateway and scoring servers)",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={shlex.join(command)}",
        f"WorkingDirectory={workdir}",
        *env_lines,
        "# Secrets (MLFLOW_STEWARD_AUDIT_KEY, database passwords) belong in this file, mode 0600:",
        f"EnvironmentFile=-/etc/mlflow-steward/{deployment}.env",
        *([f"User={user}"] if user else []),
        "Restart=on-failure",
        "RestartSec=5",
        "KillMode=control-group",
        "TimeoutStopSec=90",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def write_unit(
    out_dir: str | os.PathLike[str],
    deployment: str,
    command: list[str],
    *,
    workdir: str | None = None,
    user: str | None = None,
) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / unit_name(deployment)
    path.write_text(
        render_unit(deployment, command, workdir=workdir or os.getcwd(), user=user),
        encoding="utf-8",
    )
    return path
