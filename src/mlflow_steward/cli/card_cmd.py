"""``steward card``: a model card of a registered version, as Markdown or HTML."""

from __future__ import annotations

from pathlib import Path

import click

from mlflow_steward.cli.main import StewardContext
from mlflow_steward.errors import StewardError

#: Where ``--log`` puts the card, under the version's source run's artifacts.
CARD_DIR = "steward/cards"


@click.command()
@click.argument("model_uri")
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default="md", show_default=True)
@click.option(
    "--layout",
    type=click.Choice(["default", "annex-iv"]),
    default="default",
    show_default=True,
    help="annex-iv: the headings of the EU AI Act's Annex IV technical documentation.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE, not stdout.")
@click.option("--log", is_flag=True, help="Also log the card as an artifact of the source run.")
@click.pass_obj
def card(
    obj: StewardContext, model_uri: str, fmt: str, layout: str, output: str | None, log: bool
) -> None:
    """A model card of models:/NAME/VERSION (or NAME@ALIAS): details, uses, training data and
    procedure, evaluation and permutation feature importance, policy decisions, approvals,
    evidence, deployments and monitoring history; plugins add sections
    (steward_card_sections). Missing parts are marked absent."""
    from mlflow_steward.cli.lineage_cmd import sources
    from mlflow_steward.lineage.card import card_data, render
    from mlflow_steward.lineage.records import resolve_version

    client, records = sources(obj)
    name, version = resolve_version(client, model_uri)
    data = card_data(client, records, obj.pm, name, version)
    text = render(data, fmt, layout)
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)
    if log:
        run_id = data["lineage"]["version_info"]["run_id"]
        if not run_id:
            raise StewardError(f"models:/{name}/{version} has no source run to log the card to")
        prefix = "annex-iv" if layout == "annex-iv" else "card"
        path = f"{CARD_DIR}/{prefix}-{name}-v{version}.{fmt}"
        client.log_text(run_id, text, path)
        click.echo(f"logged runs:/{run_id}/{path}", err=True)
