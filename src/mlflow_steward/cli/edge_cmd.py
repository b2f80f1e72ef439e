"""``steward edge``: bundles, TUF channels and their keys for the edge target.

Imports stay light here: python-tuf, MLflow and pandas are imported inside the commands.
"""

from __future__ import annotations

import click


@click.group()
def edge() -> None:
    """Build model bundles and publish them to TUF channels that edge agents read.

    A channel is a TUF repository in a folder (served over HTTP or a file share): its metadata
    is signed by root and targets keys kept offline and by snapshot and timestamp keys kept
    online, each with an expiry. Needs the edge extra: pip install 'mlflow-steward[edge]'.
    """


def _progress(message: str) -> None:
    click.echo(f"  {message}", err=True)


@edge.command()
@click.argument("model_uri")
@click.option(
    "-o",
    "--output",
    default=".",
    show_default=True,
    help="The bundle file, or a folder for <name>-<version>.tar.gz.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.pass_context
def build(ctx: click.Context, model_uri: str, output: str, as_json: bool) -> None:
    """Build the bundle of MODEL_URI (models:/NAME@ALIAS or models:/NAME/VERSION).

    One archive with the MLflow model, its pinned requirements, the version's content digest
    (checked against the digest recorded at registration), the input example, the baseline's
    column summaries and a manifest. Governed: policies decide `deploy` with target
    steward-edge, kind edge, operation build, before anything is downloaded.
    """
    from mlflow_steward.cli.main import context_of, echo_json
    from mlflow_steward.deployment.edge.governed import governed_build

    built = governed_build(context_of(ctx).session(), model_uri, output, progress=_progress)
    if as_json:
        echo_json({"path": str(built.path), **built.manifest})
        return
    click.echo(
        f"{built.path}: {built.model} v{built.version} ({built.digest}), "
        f"{len(built.manifest['files'])} files"
    )
