"""Lifecycle commands: check, promote, rollback, history, approve."""

from __future__ import annotations

import click

from mlflow_steward.cli.main import StewardContext, echo_json
from mlflow_steward.plugins.types import ACTIONS


def _print_decision(decision, as_json: bool) -> None:
    if as_json:
        echo_json(decision.to_dict())
        return
    event = decision.event
    click.echo(f"{event.action} {event.target} as {event.actor}")
    if not decision.outcomes:
        click.echo("  no policy applies")
    for o in decision.outcomes:
        click.echo(f"  {'PASS' if o.allowed else 'FAIL'}  {o.policy}: {o.reason}")
    click.echo(
        "allowed"
        if decision.allowed
        else f"refused by {', '.join(o.policy for o in decision.denials)}"
    )


@click.command()
@click.argument("model_uri")
@click.option("--to", "alias", help="Alias the version would take.")
@click.option("--stage", help="Legacy stage the version would move to.")
@click.option("--action", type=click.Choice(ACTIONS), help="Check another action.")
@click.option("--name", help="Registered model name, for a model not registered yet.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def check(
    obj: StewardContext,
    model_uri: str,
    alias: str | None,
    stage: str | None,
    action: str | None,
    name: str | None,
    as_json: bool,
) -> None:
    """Dry run: each policy's verdict and reason. Exit 0 when all pass, 1 otherwise."""
    decision = obj.session().check(model_uri, action=action, alias=alias, stage=stage, name=name)
    _print_decision(decision, as_json)
    click.get_current_context().exit(0 if decision.allowed else 1)


@click.command()
@click.argument("model_uri")
@click.option("--to", "alias", help="Alias to move to this version.")
@click.option(
    "--stage",
    type=click.Choice(["Staging", "Production", "Archived", "None"]),
    help="Legacy stage (deprecated in MLflow; aliases are preferred).",
)
@click.option("--archive-existing", is_flag=True, help="With --stage: archive the versions there.")
@click.pass_obj
def promote(
    obj: StewardContext,
    model_uri: str,
    alias: str | None,
    stage: str | None,
    archive_existing: bool,
) -> None:
    """Promote models:/NAME/VERSION (governed: policies decide, the audit log records)."""
    session = obj.session()
    version = session.promote(
        model_uri, alias=alias, stage=stage, archive_existing=archive_existing
    )
    target = f"@{alias}" if alias else f"stage {stage}"
    click.echo(f"promoted version {version} to {target}")


@click.command()
@click.argument("name")
@click.option("--alias", required=True)
@click.option("--to-version", help="Roll back to this version instead of the previous holder.")
@click.option("--no-load-check", is_flag=True, help="Skip loading the target model first.")
@click.pass_obj
def rollback(
    obj: StewardContext, name: str, alias: str, to_version: str | None, no_load_check: bool
) -> None:
    """Move ALIAS back to the version that held it before (governed and audited)."""
    old, new = obj.session().rollback(
        name, alias, to_version=to_version, load_check=not no_load_check
    )
    click.echo(f"@{alias} of {name}: version {old} -> {new}")


@click.command("history")
@click.argument("name")
@click.option("--alias")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def history_cmd(obj: StewardContext, name: str, alias: str | None, as_json: bool) -> None:
    """Where each alias (and legacy stage) of NAME pointed over time."""
    entries = obj.session().history(name, alias)
    if as_json:
        echo_json([e.to_dict() for e in entries])
        return
    if not entries:
        click.echo(f"no recorded moves for {name}" + (f"@{alias}" if alias else ""))
    for e in entries:
        where = f"@{e.alias}" if e.alias else f"stage {e.stage}"
        click.echo(
            f"{e.ts}  {where:<16} {e.kind:<8} {e.previous_version or '-'} -> "
            f"{e.version or '-'}  by {e.actor}  (audit #{e.audit_seq})"
        )


@click.command()
@click.argument("model_uri")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def verify(obj: StewardContext, model_uri: str, as_json: bool) -> None:
    """Hash a version's artifacts again and compare with the digest recorded at registration.

    Exit 0 when they match; 1 when files changed (named) or no digest was recorded."""
    from mlflow_steward.plugins.events import DIGEST_TAG

    report = obj.session().verify(model_uri)
    if as_json:
        echo_json(report)
    elif report["recorded"] is None:
        click.echo(
            f"models:/{report['name']}/{report['version']}: no digest was recorded at "
            f"registration (no {DIGEST_TAG} tag); its artifacts hash to {report['current']}"
        )
    elif report["ok"]:
        click.echo(
            f"models:/{report['name']}/{report['version']}: artifacts match {report['recorded']}"
        )
    else:
        click.echo(
            f"models:/{report['name']}/{report['version']}: artifacts CHANGED since "
            f"registration: {', '.join(report['changed'])}",
            err=True,
        )
    click.get_current_context().exit(0 if report["ok"] else 1)
