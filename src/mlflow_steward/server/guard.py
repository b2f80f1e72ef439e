"""What the governed server refuses before any decision: malformed input on the routes steward
answers for, as JSON 4xx instead of MLflow's HTML 500 pages or a stack overflow.

Each rule here came from an attack run against a real server: a body of 100000 ``[`` overflows
Python's JSON decoder (``RecursionError``, an HTML 500 from every route that reads the body, basic
auth's validators included); ``[]``, ``"x"`` or ``1`` as a body crash MLflow's auth validators
(``'list' object has no attribute 'get'``); a version beyond 64 bits is a 500 from SQLite; a NUL
in a name is a 500 from PostgreSQL; 12 MB names were stored. MLflow clients retry a 5xx seven
times, so each of these was also an amplifier. The checks run first of all request hooks (before
basic auth reads the body) and only on the routes steward governs (see :data:`GOVERNED_ROUTE`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from mlflow_steward.env import MAX_BODY_ENV

#: The routes steward answers for: the registry's (reads too: they share the handlers' parsing),
#: its webhooks, and steward's own, under /api and /ajax-api.
GOVERNED_ROUTE = re.compile(
    r"^/(?:ajax-)?api/2\.0/(?:mlflow/(?:databricks/)?(?:registered-models|model-versions|webhooks)"
    r"(?:/|$)|steward/)"
)

#: A registry request is a name, a version, a few tags and a description: 1 MiB is generous.
DEFAULT_MAX_BODY = 1024 * 1024
#: Deeper JSON than this is refused: nothing MLflow's registry takes nests beyond 3 levels, and
#: recursive code downstream (protobuf parsing, JSON encoding of audit entries) must not overflow.
MAX_DEPTH = 32
#: MLflow's own column size for registered model names and aliases.
MAX_NAME = 256
#: Fields that name a registry object; checked in bodies and query strings.
NAME_FIELDS = ("name", "new_name", "alias", "key")
#: Registry versions are SQL integers: 64 bits on every database MLflow supports.
MAX_VERSION = 2**63 - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Routes that create a name: a name with "@" or "/" cannot be addressed as models:/NAME@ALIAS
#: or models:/NAME/VERSION afterwards, so it is refused there (existing names still work).
_NAMING_ROUTES = re.compile(r"/registered-models/(?:create|rename)/*$")


class Refusal(Exception):
    """A request refused before any decision: HTTP ``status`` with an MLflow error code."""

    def __init__(self, message: str, status: int = 400, code: str = "INVALID_PARAMETER_VALUE"):
        super().__init__(message)
        self.status = status
        self.code = code


def governed_route(path: str) -> bool:
    return GOVERNED_ROUTE.match(path) is not None


def max_body() -> int:
    raw = os.environ.get(MAX_BODY_ENV)
    try:
        return int(raw) if raw else DEFAULT_MAX_BODY
    except ValueError:
        return DEFAULT_MAX_BODY


def depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (iteratively: no recursion to overflow)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            items: Any = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in items)
    return deepest


def parse_body(raw: bytes) -> dict[str, Any] | None:
    """The JSON object in ``raw`` (``None`` for an empty body), or a :class:`Refusal`.

    MLflow accepts a body whose JSON is a string holding the object (old clients double-encode):
    that form is unwrapped once, as MLflow's handlers do, and checked the same way.
    """
    if not raw.strip():
        return None
    body = _loads(raw)
    if isinstance(body, str):
        try:
            body = _loads(body)
        except Refusal:
            raise Refusal("the body must be a JSON object, not a string") from None
    if not isinstance(body, dict):
        raise Refusal(f"the body must be a JSON object, not {_json_kind(body)}")
    if depth(body) > MAX_DEPTH:
        raise Refusal(f"the JSON body nests deeper than {MAX_DEPTH} levels")
    return body


def _loads(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        raise Refusal(f"the JSON body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise Refusal(f"the body is not valid JSON: {exc}") from None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def check_fields(path: str, fields: Mapping[str, Any]) -> None:
    """Refuse names and versions that MLflow's stores turn into 500s or unaddressable objects."""
    for key in NAME_FIELDS:
        value = fields.get(key)
        if not isinstance(value, str):
            continue
        if len(value) > MAX_NAME:
            raise Refusal(f"{key!r} is {len(value)} characters long; the limit is {MAX_NAME}")
        if _CONTROL.search(value):
            raise Refusal(f"{key!r} contains a control character (NUL, newline, ...): {value!r}")
    if _NAMING_ROUTES.search(path):
        for key in ("name", "new_name"):
            value = fields.get(key)
            if isinstance(value, str) and ("@" in value or "/" in value):
                raise Refusal(
                    f"{key!r} {value!r} contains '@' or '/': such a model could not be named in a "
                    "models:/NAME/VERSION or models:/NAME@ALIAS URI; choose another name"
                )
    version = fields.get("version")
    if isinstance(version, str | int) and not isinstance(version, bool):
        text = str(version).strip()
        if text.lstrip("+-").isdigit() and abs(int(text)) > MAX_VERSION:
            raise Refusal(f"version {text[:40]!r} is out of range (at most {MAX_VERSION})")


#: MLflow's error code for each status steward (or basic auth, or Flask) answers with.
_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    405: "BAD_REQUEST",
    413: "INVALID_PARAMETER_VALUE",
    415: "INVALID_PARAMETER_VALUE",
}


def error_code_for(status: int) -> str:
    return _CODES.get(status, "BAD_REQUEST")


#: Exceptions that escape an MLflow handler because of the shape of the request. MLflow's
#: handlers catch ``MlflowException`` only: a malformed enum, a list where an object belongs or a
#: too-deep body escape as these and became HTML 500 pages. On steward's routes they are 400s.
CLIENT_INPUT_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    AttributeError,
    KeyError,
    RecursionError,
    OverflowError,
)
