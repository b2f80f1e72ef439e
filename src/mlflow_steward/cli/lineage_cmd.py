"""``steward lineage``: where a version came from, why it moved, where it runs, how it does."""

from __future__ import annotations

from typing import Any

import click

from mlflow_steward.cli.main import StewardContext, echo_json
from mlflow_steward.errors import StewardError


def sources(obj: StewardContext) -> tuple[Any, Any]:
    """The MLflow client and steward's records for the command line's registry."""
    from mlflow_steward.lineage.records import open_sources

    return open_sources(obj.registry_uri, obj.config.registry_uri, obj.session)


@click.command()
@click.argument("model_uri", required=False)
@click.option(
    "--deployment", metavar="NAME", help="The version a deployment serves, and its steps."
)
@click.option("--dataset", metavar="DIGEST", help="The versions trained on a dataset (its digest).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def lineage(
    obj: StewardContext,
    model_uri: str | None,
    deployment: str | None,
    dataset: str | None,
    as_json: bool,
) -> None:
    """The chain of models:/NAME/VERSION (or NAME@ALIAS): datasets, run, logged model, version
    and digest, decisions and moves, approvals, deployments, monitoring verdicts, evidence.

    Parts that do not exist (no dataset, never deployed) are shown as absent."""
    from mlflow_steward.lineage import chain
    from mlflow_steward.lineage.records import resolve_version
    from mlflow_steward.lineage.text import render

    if sum(x is not None for x in (model_uri, deployment, dataset)) != 1:
        raise click.UsageError("give one of MODEL_URI, --deployment NAME or --dataset DIGEST")
    client, records = sources(obj)
    if dataset is not None:
        trained = chain.versions_trained_on(client, dataset)
        if as_json:
            echo_json({"dataset": dataset, "versions": trained})
        elif not trained:
            click.echo(f"no registered version was trained on a dataset with digest {dataset}")
        else:
            for v in trained:
                click.echo(f"{v['uri']}  (run {v['run_id']}, dataset {v['dataset']})")
        return
    if deployment is not None:
        recorded = records.deployment(deployment)
        if recorded is None:
            known = records.deployment_names()
            raise StewardError(
                f"no deployment named {deployment!r}"
                + (f"; deployments: {', '.join(known)}" if known else "; there are none yet")
            )
        found = chain.lineage(client, records, recorded["model"], str(recorded["version"]))
        if as_json:
            echo_json({"deployment": recorded, "lineage": found})
            return
        click.echo(
            f"deployment {recorded['name']} on {recorded['target']} serves "
            f"models:/{recorded['model']}/{recorded['version']} ({recorded['status']})"
        )
        click.echo(render(found))
        return
    assert model_uri is not None
    name, version = resolve_version(client, model_uri)
    found = chain.lineage(client, records, name, version)
    if as_json:
        echo_json(found)
    else:
        click.echo(render(found))
