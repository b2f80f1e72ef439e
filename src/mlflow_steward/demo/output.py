"""What the demo prints besides its steps' own lines: step titles, refusals, the setup and the
commands to try afterwards."""

from __future__ import annotations

import click

from mlflow_steward.demo.data import CONFIG, Workspace
from mlflow_steward.env import CONFIG_ENV, HOME_ENV


def step(n: int, text: str) -> None:
    click.echo("")
    click.secho(f"[{n}] {text}", bold=True)


def refused(exc: Exception) -> None:
    """The policies that refused, with their reasons (``exc`` is raised again if governance did
    not refuse)."""
    decision = getattr(exc, "decision", None)
    if decision is None:
        raise exc
    click.secho("    REFUSED", fg="red", bold=True)
    for o in decision.denials:
        click.echo(f"      [{o.policy}] {o.reason}")


def setup(workspace: Workspace) -> None:
    click.echo(f"Embedded registry: {workspace.db_uri}  (artifacts in {workspace.artifacts})")
    click.echo(f"Policies: {workspace.config_path}")
    click.echo(CONFIG.split("\n", 1)[1].rstrip())


def try_it_yourself(workspace: Workspace, name: str, refused_version: str, serving: bool) -> None:
    click.echo("")
    click.echo("Try it yourself:")
    click.echo(
        f"  export MLFLOW_TRACKING_URI={workspace.db_uri} {CONFIG_ENV}={workspace.config_path} "
        f"{HOME_ENV}={workspace.home}"
    )
    click.echo(f"  steward check models:/{name}/{refused_version} --to production")
    click.echo(f"  steward history {name}")
    click.echo(f"  steward deploy history {name}")
    click.echo("  steward monitor run --monitor breast-cancer-production")
    edge = workspace.root / "edge"
    if (edge / "channel").is_dir():
        click.echo(f"  steward edge channel show --channel {edge / 'channel'}")
        click.echo(f"  steward edge status --uploads {edge / 'uploads'}")
    if serving:
        click.echo(f"  steward deploy status {name}")
        click.echo(f"  steward deploy delete {name}")
    click.echo("  steward audit verify")
