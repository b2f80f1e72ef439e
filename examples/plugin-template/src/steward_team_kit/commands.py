"""A CLI command, ``steward team-report`` (hook ``steward_commands``).

``load`` is called only when the command runs or its help is shown, so MLflow is imported inside
the command, never when ``steward --help`` lists it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import click

from mlflow_steward import hookimpl
from mlflow_steward.plugins import Command


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--model", "models", multiple=True, help="Only these models (repeatable).")
def team_report(as_json: bool, models: tuple[str, ...]) -> None:
    """Each registered model with its latest version and where its aliases point."""
    from mlflow import MlflowClient

    client = MlflowClient()
    report: dict[str, dict[str, Any]] = {}
    for model in client.search_registered_models():
        if models and model.name not in models:
            continue
        latest = max((int(v.version) for v in model.latest_versions), default=None)
        report[model.name] = {"latest": latest, "aliases": dict(sorted(model.aliases.items()))}
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
        return
    for name, row in sorted(report.items()):
        aliases = ", ".join(f"@{a}=v{v}" for a, v in row["aliases"].items()) or "no aliases"
        click.echo(f"{name}: latest v{row['latest']}, {aliases}")


@hookimpl
def steward_commands() -> Iterator[Command]:
    yield Command(
        name="team-report",
        load=lambda: team_report,
        help="Each model's latest version and its aliases.",
    )
