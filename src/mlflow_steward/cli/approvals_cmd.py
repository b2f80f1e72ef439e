"""``steward approve``, ``steward reject`` and ``steward approvals``: four-eyes reviews.

Against a governed server (``http(s)://`` URI) they call its steward endpoints, which record the
review with the identity the server authenticated; against a registry database they record it
directly, as ``MLFLOW_STEWARD_ACTOR`` (or the operating-system user).
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from mlflow_steward.cli.main import StewardContext, echo_json

#: The moves a review can be about (``governance.events.REVIEWED_ACTIONS``, kept here so that
#: ``steward --help`` imports nothing heavy; tests/test_approvals_binding.py checks they agree).
REVIEWED_ACTIONS = ("set_alias", "delete_alias", "transition_stage", "deploy")


def _reviews(obj: StewardContext):
    from mlflow_steward.lifecycle.reviews import LocalReviews, ServerReviews, is_server_uri
    from mlflow_steward.registry import resolve_registry_uri

    uri = resolve_registry_uri(obj.registry_uri, obj.config.registry_uri)
    return ServerReviews(uri) if is_server_uri(uri) else LocalReviews(obj.session())


def _review(
    obj: StewardContext, model_uri: str, alias: str, verdict: str, comment: str, action: str
) -> None:
    decision = _reviews(obj).review(
        model_uri, alias=alias, verdict=verdict, comment=comment, action=action
    )
    done = {"request": "requested approval of", "approve": "approved", "reject": "rejected"}
    what = "" if action == "set_alias" else f" ({action})"
    click.echo(f"{done[verdict]} {model_uri} for @{alias}{what} as {decision['actor']}")


_alias = click.option("--alias", required=True, help="The alias the review is for.")
_comment = click.option("--comment", default="", help="Why (recorded and audited).")
_action = click.option(
    "--action",
    type=click.Choice(REVIEWED_ACTIONS),
    default="set_alias",
    show_default=True,
    help="The move reviewed: set_alias (the promotion), delete_alias (the demotion), ...",
)


@click.command()
@click.argument("model_uri")
@_alias
@_comment
@_action
@click.pass_obj
def approve(obj: StewardContext, model_uri: str, alias: str, comment: str, action: str) -> None:
    """Approve models:/NAME/VERSION taking ALIAS, as the current identity."""
    _review(obj, model_uri, alias, "approve", comment, action)


@click.command()
@click.argument("model_uri")
@_alias
@_comment
@_action
@click.pass_obj
def reject(obj: StewardContext, model_uri: str, alias: str, comment: str, action: str) -> None:
    """Reject models:/NAME/VERSION taking ALIAS (blocks the move until the rejection expires)."""
    _review(obj, model_uri, alias, "reject", comment, action)


@click.group()
def approvals() -> None:
    """Request and list reviews of promotions."""


@approvals.command("request")
@click.argument("model_uri")
@_alias
@_comment
@_action
@click.pass_obj
def request_cmd(obj: StewardContext, model_uri: str, alias: str, comment: str, action: str) -> None:
    """Ask for models:/NAME/VERSION to take ALIAS (the requester cannot approve it)."""
    _review(obj, model_uri, alias, "request", comment, action)


@approvals.command("list")
@click.option("--model", help="Only reviews of this registered model.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_cmd(obj: StewardContext, model: str | None, as_json: bool) -> None:
    """Reviews of the last 7 days, oldest first."""
    reviews = _reviews(obj).reviews(model)
    if as_json:
        echo_json(reviews)
        return
    if not reviews:
        click.echo("no reviews in the last 7 days")
    for r in reviews:
        when = datetime.fromtimestamp(r["created"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        comment = f"  ({r['comment']})" if r["comment"] else ""
        click.echo(
            f"{when}  {r['name']}/{r['version']}@{r['alias']}  {r['verdict']:<8} "
            f"by {r['actor']}{comment}"
        )
