"""Who is making a request to the governed server.

``MLFLOW_STEWARD_AUTH`` chooses the source of identity:

* ``basic``: MLflow's basic-auth app authenticates (its users and permissions); the actor is the
  authenticated user name.
* ``trusted-header``: a reverse proxy authenticates and passes the user in a header
  (``MLFLOW_STEWARD_TRUSTED_HEADER``, default ``X-Forwarded-User``). Only safe when nothing but
  that proxy can reach the server: anyone who reaches it directly can send the header.
* unset (or ``none``): no authentication; every actor is ``anonymous`` (the ``require-identity``
  policy refuses governed actions by anonymous actors).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from mlflow_steward.errors import StewardError

AUTH_ENV = "MLFLOW_STEWARD_AUTH"
TRUSTED_HEADER_ENV = "MLFLOW_STEWARD_TRUSTED_HEADER"
DEFAULT_TRUSTED_HEADER = "X-Forwarded-User"
ANONYMOUS = "anonymous"
MODES = ("none", "basic", "trusted-header")

# What a header may carry as a user name: no control characters, bounded length.
_VALID_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")


def auth_mode() -> str:
    mode = (os.environ.get(AUTH_ENV) or "none").strip().lower()
    if mode not in MODES:
        raise StewardError(
            f"{AUTH_ENV}={os.environ.get(AUTH_ENV)!r} is not valid; use one of: {', '.join(MODES)}"
        )
    return mode


def actor_resolver(mode: str) -> Callable[[object], str]:
    """A function from the current Flask request to the actor's name."""
    if mode == "basic":

        def from_basic_auth(request: object) -> str:
            # MLflow's basic-auth before_request hook ran first and refused unauthenticated
            # requests with 401, so a request that gets here carries verified credentials.
            auth = getattr(request, "authorization", None)
            return (auth.username if auth is not None else None) or ANONYMOUS

        return from_basic_auth
    if mode == "trusted-header":
        header = os.environ.get(TRUSTED_HEADER_ENV) or DEFAULT_TRUSTED_HEADER

        def from_header(request: object) -> str:
            value = (request.headers.get(header) or "").strip()  # type: ignore[attr-defined]
            return value if _VALID_NAME.match(value) else ANONYMOUS

        return from_header
    return lambda _request: ANONYMOUS
