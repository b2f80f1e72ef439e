"""The reviewers' page routes (see :mod:`mlflow_steward.server.reviewers`)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from mlflow_steward import _mlflow_adapter
from mlflow_steward.errors import LifecycleError, RegistryURIError
from mlflow_steward.server import guard
from mlflow_steward.server.reviewers import csrf, data

_logger = logging.getLogger(__name__)

PREFIX = "/steward"
#: (path, methods) of every page; the review form's route takes GET only to explain itself.
PAGES = {
    f"{PREFIX}/": "pending",
    f"{PREFIX}/audit": "audit",
    f"{PREFIX}/deployments": "deployments",
    f"{PREFIX}/monitoring": "monitoring",
}
REVIEW = f"{PREFIX}/review"
VERDICTS = ("approve", "reject")
NAV = (
    ("pending", "Pending approvals"),
    ("audit", "Audit log"),
    ("deployments", "Deployments"),
    ("monitoring", "Monitoring"),
)


@functools.cache
def _templates() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mlflow_steward.server.reviewers", "templates"),
        autoescape=True,  # every template, whatever its name: names and comments are text
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when
    return env


def _when(ts: Any) -> str:
    """An ISO 8601 UTC timestamp as stored (``2026-05-01T12:00:00.123456Z``), to the second."""
    text = str(ts or "")
    return text.replace("T", " ").split(".")[0].rstrip("Z")


class _Context:
    """What every view needs about the request: who, whether basic auth decides reads."""

    def __init__(self, basic_auth: bool) -> None:
        from flask import current_app, request

        from mlflow_steward.governance.governor import _request_actor

        self.user = _request_actor.get() or "anonymous"
        self.basic_auth = basic_auth
        self.secret = current_app.secret_key
        self.sid, self.new_sid = csrf.session_id(request)
        self._readable: dict[str, bool] = {}

    def may_read(self, model: str) -> bool:
        """Whether the REST API would let this user read (and so review) ``model``."""
        if not self.basic_auth:
            return True
        if model not in self._readable:
            self._readable[model] = _mlflow_adapter.server_user_may_read_model(model)
        return self._readable[model]

    @property
    def csrf_token(self) -> str:
        return csrf.token(self.secret, self.sid, self.user)


def _render(ctx: _Context, template: str, status: int = 200, **values: Any) -> Any:
    from flask import make_response, request

    html = (
        _templates()
        .get_template(template)
        .render(
            user=ctx.user,
            csrf_field=csrf.FIELD,
            csrf_token=ctx.csrf_token,
            prefix=PREFIX,
            nav=NAV,
            **values,
        )
    )
    response = make_response(html, status)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    # The page is never framed (clickjacking) and runs no script at all.
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    if ctx.new_sid:
        csrf.set_cookie(response, request, ctx.sid)
    return response


def _error(ctx: _Context, status: int, title: str, message: str) -> Any:
    return _render(ctx, "error.html", status, page="", title=title, message=message)


def _page(basic_auth: bool, view: Callable[[_Context], Any]) -> Callable[[], Any]:
    """A view that answers every failure with an error page (4xx), never a 5xx."""

    from werkzeug.exceptions import RequestEntityTooLarge

    @functools.wraps(view)
    def wrapper() -> Any:
        ctx = _Context(basic_auth)
        try:
            return view(ctx)
        except data.InvalidFilter as exc:
            return _error(ctx, 400, "Invalid filter", str(exc))
        except RequestEntityTooLarge:
            return _error(
                ctx, 413, "The form is too large", f"Send at most {guard.max_body()} bytes."
            )
        except Exception as exc:
            _logger.exception("the reviewers' page failed on %s", view.__name__)
            return _error(
                ctx,
                400,
                "This page could not be shown",
                f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}. "
                "The server's log has the details.",
            )

    return wrapper


def _session() -> Any:
    from mlflow_steward.server.api import session

    return session()


def _pending(ctx: _Context, *, notice: str = "", status: int = 200) -> Any:
    items = data.pending_requests(_session(), ctx.may_read)
    return _render(ctx, "pending.html", status, page="pending", items=items, notice=notice)


def _audit(ctx: _Context) -> Any:
    from flask import request

    view = data.audit_view(_session(), ctx.may_read, dict(request.args))
    return _render(ctx, "audit.html", page="audit", view=view)


def _deployments(ctx: _Context) -> Any:
    rows = data.deployments(_session(), ctx.may_read)
    return _render(ctx, "deployments.html", page="deployments", rows=rows)


def _monitoring(ctx: _Context) -> Any:
    from flask import request

    rows = data.monitor_runs(_session(), ctx.may_read, ui_base=request.script_root)
    return _render(ctx, "monitoring.html", page="monitoring", rows=rows)


def _review(ctx: _Context) -> Any:
    """Approve or reject from the page: the REST API's code path, as the authenticated user."""
    from flask import request
    from mlflow.exceptions import MlflowException

    from mlflow_steward.server.api import BadRequest, error_status, review_request

    if request.method != "POST":
        return _error(
            ctx,
            405,
            "Use the page's buttons",
            "Approving and rejecting change what may be promoted: they are sent as forms (POST) "
            "from the pending approvals page, never by following a link.",
        )
    request.max_content_length = guard.max_body()
    refused = csrf.problem(request, ctx.secret, ctx.user)
    if refused:
        return _error(
            ctx,
            403,
            "Refused: this form may be forged",
            f"Nothing was recorded: {refused}. Reload the pending approvals page and send the "
            "form from there.",
        )
    verdict = request.form.get("verdict", "")
    if verdict not in VERDICTS:
        return _error(ctx, 400, "Unknown review", "Choose approve or reject.")
    fields = {k: request.form.get(k, "") for k in ("name", "version", "alias", "action", "comment")}
    try:
        guard.check_fields(REVIEW, fields)
    except guard.Refusal as refusal:
        return _error(ctx, refusal.status, "Invalid review", str(refusal))
    if fields["name"] and not ctx.may_read(fields["name"]):
        return _error(
            ctx,
            403,
            "Permission denied",
            f"{ctx.user} may not read registered model {fields['name']!r}, so may not review it.",
        )
    try:
        decision = review_request(verdict, fields)
    except (BadRequest, LifecycleError, RegistryURIError, MlflowException) as exc:
        status, _code, message = error_status(exc) or (400, "", str(exc))
        title = "Refused by steward" if status == 403 else "The review was not recorded"
        return _error(ctx, status, title, message)
    done = "approved" if verdict == "approve" else "rejected"
    event = decision.event
    return _pending(
        ctx,
        notice=f"{ctx.user} {done} version {event.version} of {event.model} for @{event.alias}.",
    )


def register(flask_app: Any, *, basic_auth: bool = False) -> None:
    """Add the page's routes; under basic-auth, every authenticated user reaches them and each
    view shows (and lets review) only the models the user may read."""
    views = {
        "pending": _pending,
        "audit": _audit,
        "deployments": _deployments,
        "monitoring": _monitoring,
    }
    if basic_auth:
        _mlflow_adapter.server_allow_authenticated(
            [(path, "GET") for path in PAGES] + [(PREFIX, "GET"), (REVIEW, "GET"), (REVIEW, "POST")]
        )
    for path, name in PAGES.items():
        flask_app.add_url_rule(
            path,
            endpoint=f"steward-page-{name}",
            view_func=_page(basic_auth, views[name]),
            methods=["GET"],
        )
    flask_app.add_url_rule(
        REVIEW,
        endpoint="steward-page-review",
        view_func=_page(basic_auth, _review),
        methods=["GET", "POST"],
    )
