"""CSRF protection of the reviewers' page: a per-session token in every form, checked on every
POST.

A browser session gets a random session id in a cookie (``HttpOnly``, ``SameSite=Strict``,
scoped to ``/steward/``). The token in each form is an HMAC of that id and the authenticated user
under the server's secret key (``MLFLOW_FLASK_SERVER_SECRET_KEY``, which MLflow's basic-auth app
requires anyway, so every worker checks tokens alike). A POST is accepted only with the cookie and
the token made from it for the same user, and, when the browser sends an ``Origin``, only from the
server's own origin. A forged form on another site can send the cookie (or not), but cannot read
it or the page, so it cannot send the token. Nothing is kept on the server.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import Any

COOKIE = "steward_session"
FIELD = "csrf_token"
COOKIE_PATH = "/steward/"
_PROCESS_KEY = secrets.token_bytes(32)


def _key(app_secret: Any) -> bytes:
    secret = app_secret or os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY")
    if not secret:
        # No basic auth and no configured key: tokens hold within this worker process only.
        return _PROCESS_KEY
    return secret if isinstance(secret, bytes) else str(secret).encode()


def session_id(request: Any) -> tuple[str, bool]:
    """The browser session's id and whether it is new (the response must set the cookie)."""
    current = request.cookies.get(COOKIE, "")
    if 32 <= len(current) <= 128 and current.isalnum():
        return current, False
    return secrets.token_hex(32), True


def token(app_secret: Any, sid: str, user: str) -> str:
    message = f"steward-reviewers\x00{sid}\x00{user}".encode()
    return hmac.new(_key(app_secret), message, hashlib.sha256).hexdigest()


def problem(request: Any, app_secret: Any, user: str) -> str | None:
    """Why this POST is refused as a possible forgery, or ``None``."""
    origin = request.headers.get("Origin")
    if origin and origin != "null" and origin.rstrip("/") != request.host_url.rstrip("/"):
        return f"the form was sent from another site ({origin[:100]})"
    sid = request.cookies.get(COOKIE, "")
    sent = request.form.get(FIELD, "")
    if not sid or not sent:
        return "the form's security token is missing"
    if not hmac.compare_digest(sent, token(app_secret, sid, user)):
        return "the form's security token does not match this browser session and user"
    return None


def set_cookie(response: Any, request: Any, sid: str) -> None:
    response.set_cookie(
        COOKIE,
        sid,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )
