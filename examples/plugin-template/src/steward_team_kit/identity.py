"""Who acts (hook ``steward_resolve_actor``): the CI job's author when steward runs in CI.

Return ``None`` to leave the decision to other plugins and finally to steward's default
(``MLFLOW_STEWARD_ACTOR``, else the operating-system user). Inside ``mlflow server --app-name
steward`` the server's authenticated user is used and this hook is not asked.
"""

from __future__ import annotations

import os

from mlflow_steward import hookimpl


@hookimpl
def steward_resolve_actor(default: str) -> str | None:
    author = os.environ.get("CI_COMMIT_AUTHOR", "").strip()
    return f"ci:{author}" if author else None
