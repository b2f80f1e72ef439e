"""Steps 2-6: registrations and promotions refused with their reasons, fixed, then allowed; and the
promotion the later steps share."""

from __future__ import annotations

import click

from mlflow_steward.demo.data import DemoData
from mlflow_steward.demo.output import refused, step
from mlflow_steward.demo.training import FirstModels


def promote(data: DemoData, model_uri: str) -> str:
    """Registers ``model_uri``, tags the version owner=alice and moves @production to it."""
    import mlflow
    from mlflow import MlflowClient

    version = str(mlflow.register_model(model_uri, data.name).version)
    client = MlflowClient()
    client.set_model_version_tag(data.name, version, "owner", "alice")
    client.set_registered_model_alias(data.name, "production", version)
    return version


def governance_steps(data: DemoData, models: FirstModels) -> str:
    """Steps 2-6; returns the coin flip's version (refused @production for its accuracy)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    name = data.name

    step(2, "Registering the model logged without a signature: mlflow.register_model(...)")
    try:
        mlflow.register_model(models.unsigned, name)
        raise click.ClickException("the unsigned model was registered: governance is not active")
    except MlflowException as exc:
        refused(exc)
    left = client.search_registered_models(f"name = '{name}'")
    click.echo(f"    registered models named {name!r} left behind: {len(left)}")

    step(3, "Registering the signed models")
    v_good = str(mlflow.register_model(models.good, name).version)
    v_weak = str(mlflow.register_model(models.weak, name).version)
    click.echo(f"    version {v_good}: logistic regression, version {v_weak}: coin flip")

    step(4, f"Promoting version {v_good} to @production (it has no `owner` tag yet)")
    try:
        client.set_registered_model_alias(name, "production", v_good)
    except MlflowException as exc:
        refused(exc)

    step(5, f"Promoting version {v_weak} (coin flip, tagged owner=alice) to @production")
    client.set_model_version_tag(name, v_weak, "owner", "alice")
    try:
        client.set_registered_model_alias(name, "production", v_weak)
    except MlflowException as exc:
        refused(exc)

    step(6, f"Fixing version {v_good}: tag owner=alice, then promote again")
    client.set_model_version_tag(name, v_good, "owner", "alice")
    client.set_registered_model_alias(name, "production", v_good)
    holder = client.get_model_version_by_alias(name, "production").version
    click.secho(
        f"    ALLOWED: models:/{name}@production -> version {holder}", fg="green", bold=True
    )
    return v_weak
