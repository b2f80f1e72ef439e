"""Alert channels: a JSON webhook signed with HMAC-SHA256, a Slack-compatible webhook, and SMTP
email; and delivery that retries a failing channel and never lets it stop the monitor run.

The webhook's signature: ``X-Steward-Signature: sha256=<hex>``, the HMAC-SHA256 under the secret
(from the environment variable named by ``secret_env``) of ``<X-Steward-Timestamp>.<body>``.
A receiver recomputes it with :func:`sign` and rejects old timestamps (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins.types import Alert, Alerter, Option

_logger = logging.getLogger(__name__)

ATTEMPTS = 3
SIGNATURE_HEADER, TIMESTAMP_HEADER = "X-Steward-Signature", "X-Steward-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: what a receiver compares (with ``hmac.compare_digest``) to the header."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def _secret(settings: Mapping[str, Any], key: str) -> str | None:
    name = settings.get(key)
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} (from {key}) is not set")
    return value


def _post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> None:
    import urllib.request

    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers))
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if response.status >= 300:
            raise RuntimeError(f"{url} answered HTTP {response.status}")


def _webhook(alert: Alert, settings: Mapping[str, Any]) -> None:
    body = json.dumps(alert.to_dict(), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", **dict(settings.get("headers") or {})}
    secret = _secret(settings, "secret_env")
    if secret:
        stamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = stamp
        headers[SIGNATURE_HEADER] = sign(secret, stamp, body)
    _post(settings["url"], body, headers, settings["timeout"])


def _slack(alert: Alert, settings: Mapping[str, Any]) -> None:
    body = json.dumps({"text": alert.summary}).encode()
    _post(settings["url"], body, {"Content-Type": "application/json"}, settings["timeout"])


def _smtp(alert: Alert, settings: Mapping[str, Any]) -> None:
    import smtplib
    from email.message import EmailMessage

    message = EmailMessage()
    message["Subject"] = (
        f"[steward] {alert.monitor}: {alert.status} on {alert.model} v{alert.version}"
    )
    message["From"] = settings["sender"]
    message["To"] = ", ".join(settings["to"])
    message.set_content(alert.summary + "\n\n" + json.dumps(alert.to_dict(), indent=2))
    with smtplib.SMTP(settings["host"], settings["port"], timeout=settings["timeout"]) as smtp:
        if settings["starttls"]:
            smtp.starttls()
        password = _secret(settings, "password_env")
        if settings.get("username") and password:
            smtp.login(settings["username"], password)
        smtp.send_message(message)


_TIMEOUT = Option("timeout", "number", "seconds per attempt", 10)


@hookimpl
def steward_alerters() -> Iterator[Alerter]:
    yield Alerter(
        name="webhook",
        send=_webhook,
        help="POST the alert as JSON, signed with HMAC-SHA256 (X-Steward-Signature)",
        options=(
            Option("url", "str", "where to POST"),
            Option("secret_env", "str", "environment variable holding the HMAC secret", ""),
            Option("headers", "mapping", "extra HTTP headers", {}),
            _TIMEOUT,
        ),
    )
    yield Alerter(
        name="slack",
        send=_slack,
        help="a Slack-compatible incoming webhook ({'text': ...})",
        options=(Option("url", "str", "the incoming-webhook URL"), _TIMEOUT),
    )
    yield Alerter(
        name="smtp",
        send=_smtp,
        help="email through an SMTP server",
        options=(
            Option("host", "str", "SMTP server"),
            Option("port", "int", "SMTP port", 25),
            Option("sender", "str", "From: address"),
            Option("to", "str_list", "recipients"),
            Option("starttls", "bool", "upgrade the connection with STARTTLS", False),
            Option("username", "str", "login name", ""),
            Option("password_env", "str", "environment variable holding the password", ""),
            _TIMEOUT,
        ),
    )


@dataclass(frozen=True)
class Delivery:
    alerter: str
    ok: bool
    attempts: int
    error: str = ""


def deliver(
    alert: Alert,
    targets: Sequence[str],
    entries: Mapping[str, Any],
    channels: Mapping[str, Alerter],
    *,
    attempts: int = ATTEMPTS,
    backoff: float = 0.5,
) -> list[Delivery]:
    """Send ``alert`` through each configured alerter in ``targets``; retry each up to
    ``attempts`` times; never raise (a failure is logged and returned)."""
    out = []
    for name in targets:
        entry = entries[name]
        error = ""
        for attempt in range(1, attempts + 1):
            try:
                channels[entry.use].send(alert, entry.settings)
                out.append(Delivery(name, True, attempt))
                break
            except Exception as exc:  # a channel must never stop the run or the others
                error = f"{type(exc).__name__}: {exc}"
                _logger.warning(
                    "alerter %s attempt %d/%d failed: %s", name, attempt, attempts, error
                )
                if attempt < attempts:
                    time.sleep(backoff * attempt)
        else:
            out.append(Delivery(name, False, attempts, error))
    return out
