"""Real `mlflow server` processes for the tests (the harness is tests/mlflow_server.py), and the
environment that turns on MLflow's basic-auth app with steward's identity from it."""

import textwrap
from pathlib import Path
from typing import Any

import requests

from mlflow_steward.deployment.onprem.ports import free_port
from tests.mlflow_server import Server, mlflow_server

__all__ = ["Server", "basic_auth_env", "create_user", "free_port", "mlflow_server"]


def basic_auth_env(
    root: Path,
    password: str,
    *,
    authorization_function: str = "mlflow.server.auth:authenticate_request_basic_auth",
) -> dict[str, str]:
    """Write MLflow's auth configuration under ``root`` (users in ``root/auth.db``, admin
    ``admin`` with ``password``, everyone EDIT by default) and return the server environment
    that uses it, with ``MLFLOW_STEWARD_AUTH=basic``."""
    ini = root / "basic_auth.ini"
    ini.write_text(
        textwrap.dedent(f"""\
        [mlflow]
        default_permission = EDIT
        database_uri = sqlite:///{root / "auth.db"}
        admin_username = admin
        authorization_function = {authorization_function}
        """)
    )
    return {
        "MLFLOW_STEWARD_AUTH": "basic",
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "steward-test-secret",
    }


def create_user(url: str, user: str, password: str, **admin: Any) -> None:
    """Create ``user`` in the basic-auth app of the server at ``url``; ``admin`` is how the admin
    authenticates (``auth=("admin", password)`` or ``headers={...}``)."""
    created = requests.post(
        f"{url}/api/2.0/mlflow/users/create",
        json={"username": user, "password": password},
        timeout=30,
        **admin,
    )
    assert created.status_code == 200, created.text
