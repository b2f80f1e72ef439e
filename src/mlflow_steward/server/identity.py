"""Who is making a request to the governed server.

``MLFLOW_STEWARD_AUTH`` chooses the source of identity:

* ``basic``: MLflow's basic-auth app authenticates (its users and permissions, or the custom
  ``authorization_function`` of its configuration); the actor is the user name that app
  authenticated for this request, as the app itself recorded it: never re-read by steward from
  the ``Authorization`` header, which a custom function may not even use.
* ``trusted-header``: a reverse proxy authenticates and passes the user in a header
  (``MLFLOW_STEWARD_TRUSTED_HEADER``, default ``X-Forwarded-User``). Only safe when nothing but
  that proxy can reach the server: anyone who reaches it directly can send the header. A request
  carrying the header twice, or spelled with ``_`` (``X_Forwarded_User``, which servers merge
  into the same WSGI variable as ``X-Forwarded-User``), is refused with 400 before anything else.
* unset (or ``none``): no authentication; every actor is ``anonymous`` (the ``require-identity``
  policy refuses governed actions by anonymous actors).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from mlflow_steward import _mlflow_adapter
from mlflow_steward.env import AUTH_ENV, TRUSTED_HEADER_ENV
from mlflow_steward.errors import StewardError

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


def trusted_header() -> str:
    return os.environ.get(TRUSTED_HEADER_ENV) or DEFAULT_TRUSTED_HEADER


def _canonical(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def trusted_header_problem(headers: Iterable[tuple[str, str]], header: str) -> str | None:
    """Why the raw request ``headers`` (name, value pairs as sent) carry an ambiguous identity,
    or ``None``.

    Ambiguous: the identity header sent more than once (servers join the values with ``,``), or
    spelled with ``_`` instead of ``-`` (WSGI servers map both spellings to one environment
    variable, so a client's ``X_Forwarded_User`` can stand in for, or merge with, the proxy's
    ``X-Forwarded-User``), or a value with a comma (what a merge of two values looks like).
    """
    wanted = _canonical(header)
    found = [(name, value) for name, value in headers if _canonical(name) == wanted]
    if len(found) > 1:
        return f"the identity header {header} was sent {len(found)} times; send it once"
    for name, value in found:
        if "_" in name:
            return (
                f"the identity header was sent as {name!r}; only {header!r} (with '-') is "
                "accepted, because servers merge the two spellings"
            )
        if "," in value:
            return f"the identity header {header} holds several values ({value!r}); send one"
    return None


def refusal_body(message: str) -> bytes:
    return json.dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": message}).encode()


class TrustedHeaderGuard:
    """ASGI middleware (outermost, under uvicorn): refuses an ambiguous identity header with JSON
    400 before any other middleware or Flask hook runs.

    It reads the raw header list, where both spellings and each repetition are still visible;
    by the time a request reaches Flask, Starlette has folded them into one WSGI variable.
    """

    def __init__(self, app: Any, header: str | None = None) -> None:
        self.app = app
        self.header = header or trusted_header()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
            problem = trusted_header_problem(raw, self.header)
            if problem:
                body = refusal_body(problem)
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def wsgi_header_problem(request: Any, header: str) -> str | None:
    """:func:`trusted_header_problem` for a Flask request: a WSGI server has already folded the
    spellings together, so what is left to see is a repeated or comma-joined value."""
    values = request.headers.getlist(header)
    return trusted_header_problem([(header, v) for v in values], header)


def actor_resolver(mode: str) -> Callable[[object], str]:
    """A function from the current Flask request to the actor's name."""
    if mode == "basic":

        def from_auth_app(_request: object) -> str:
            # MLflow's auth app ran its before_request hook first and refused unauthenticated
            # requests (401); it records who it authenticated, whatever its authorization
            # function read (Basic credentials, a token, a proxy header).
            return _mlflow_adapter.server_authenticated_user() or ANONYMOUS

        return from_auth_app
    if mode == "trusted-header":
        header = trusted_header()

        def from_header(request: object) -> str:
            values = request.headers.getlist(header)  # type: ignore[attr-defined]
            if len(values) != 1:  # absent, or repeated (refused before this by the guards)
                return ANONYMOUS
            value = values[0].strip()
            return value if _VALID_NAME.match(value) and "," not in value else ANONYMOUS

        return from_header
    return lambda _request: ANONYMOUS
