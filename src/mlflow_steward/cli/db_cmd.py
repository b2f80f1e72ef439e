"""``steward db``: the schema of steward's own tables in the registry's database."""

from __future__ import annotations

import click

from mlflow_steward.cli.main import StewardContext, echo_json


def _database(obj: StewardContext, registry_uri: str | None) -> str:
    from mlflow_steward.registry import governed_uri, resolve_registry_uri

    configured = None if registry_uri or obj.registry_uri else obj.config.registry_uri
    return governed_uri(resolve_registry_uri(registry_uri or obj.registry_uri, configured))


_REGISTRY_URI = click.option(
    "--registry-uri",
    help="Registry database (default: the global --registry-uri, $MLFLOW_REGISTRY_URI, ...).",
)


@click.group()
def db() -> None:
    """Steward's tables: schema status and upgrades."""


@db.command()
@_REGISTRY_URI
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def upgrade(obj: StewardContext, registry_uri: str | None, as_json: bool) -> None:
    """Upgrade steward's tables to this release's schema (keeps every entry)."""
    from mlflow_steward.records import migrations

    uri = _database(obj, registry_uri)
    before, after = migrations.upgrade(uri)
    if as_json:
        echo_json({"before": before, "after": after})
    elif before == after:
        click.echo(f"steward's tables are at schema {after} already: nothing to do")
    else:
        click.echo(f"steward's tables upgraded from schema {before or '(none)'} to {after}")


@db.command()
@_REGISTRY_URI
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(obj: StewardContext, registry_uri: str | None, as_json: bool) -> None:
    """The schema steward's tables are at, and the one this release needs."""
    from mlflow_steward.records import db as steward_db
    from mlflow_steward.records import schema

    uri = steward_db.sql_uri(_database(obj, registry_uri))
    engine = steward_db._new_engine(uri)
    try:
        with engine.connect() as conn:
            current = steward_db.schema_revision(conn)
    finally:
        engine.dispose()
    needed = schema.SCHEMA_REVISION
    if as_json:
        echo_json({"current": current, "needed": needed, "ok": current in (None, needed)})
        return
    click.echo(f"schema {current or '(no steward tables yet)'}; this release needs {needed}")
    if current not in (None, needed):
        raise click.exceptions.Exit(1)
