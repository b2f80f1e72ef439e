"""``steward approve``, ``steward reject`` and ``steward approvals``: four-eyes reviews.

Against a governed server (``http(s)://`` URI) they call its steward endpoints, which record the
review with the identity the server authenticated; against a registry database they record it
directly, as ``MLFLOW_STEWARD_ACTOR`` (or the operating-system user).
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from mlflow_steward.cli.main import StewardContext, echo_json


def _reviews(obj: StewardContext):
    from mlflow_steward.lifecycle.reviews import LocalReviews, ServerReviews, is_server_uri
    from mlflow_steward.registry import resolve_registry_uri

    uri = resolve_registry_uri(obj.registry_uri, obj.config.registry_uri)
    return ServerReviews(uri) if is_server_uri(uri) else LocalReviews(obj.session())


def _review(obj: StewardContext, model_uri: str, alias: str, verdict: str, comment: str) -> None:
    decision = _reviews(obj).review(model_uri, alias=alias, verdict=verdict, comment=comment)
    done = {"request": "requested approval of", "approve": "approved", "reject": "rejected"}
    click.echo(f"{done[verdict]} {model_uri} for @{alias} as {decision['actor']}")


_alias = click.option("--alias", required=True, help="The alias the review is for.")
_comment = click.option("--comment", default="", help="Why (recorded and audited).")


@click.command()
@click.argument("model_uri")
@_alias
@_comment
@click.pass_obj
def approve(obj: StewardContext, model_uri: str, alias: str, comment: str) -> None:
    """Approve models:/NAME/VERSION taking ALIAS, as the current identity."""
    _review(obj, model_uri, alias, "approve", comment)


@click.command()
@click.argument("model_uri")
@_alias
@_comment
@click.pass_obj
def reject(obj: StewardContext, model_uri: str, alias: str, comment: str) -> None:
    """Reject models:/NAME/VERSION taking ALIAS (blocks the move until the rejection expires)."""
    _review(obj, model_uri, alias, "reject", comment)


@click.group()
def approvals() -> None:
    """Request and list reviews of promotions."""


@approvals.command("request")
@click.argument("model_uri")
@_alias
@_comment
@click.pass_obj
def request_cmd(obj: StewardContext, model_uri: str, alias: str, comment: str) -> None:
    """Ask for models:/NAME/VERSION to take ALIAS (the requester cannot approve it)."""
    _review(obj, model_uri, alias, "request", comment)


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
