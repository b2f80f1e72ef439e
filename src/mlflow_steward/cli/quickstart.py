"""``steward quickstart``: governance end to end on an embedded registry (SQLite + local files).

It trains real scikit-learn models on a data set scikit-learn ships, registers them through the
governed ``steward+sqlite`` registry with plain MLflow calls, shows refusals with their reasons,
fixes what was missing, promotes, and verifies the audit log.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from mlflow_steward.cli.main import StewardContext

QUICKSTART_CONFIG = """\
# steward.yaml written by `steward quickstart`
policies:
  - use: require-signature
  - use: required-tags
    when: {action: set_alias, alias: production}
    with: {tags: [owner]}
  - use: metric-threshold
    when: {action: set_alias, alias: production}
    with: {metric: accuracy, min: 0.8}
"""


def _step(n: int, text: str) -> None:
    click.echo("")
    click.secho(f"[{n}] {text}", bold=True)


def _refused(exc: Exception) -> None:
    decision = getattr(exc, "decision", None)
    if decision is None:
        raise exc
    click.secho("    REFUSED", fg="red", bold=True)
    for o in decision.denials:
        click.echo(f"      [{o.policy}] {o.reason}")


@click.command()
@click.option(
    "--dir",
    "folder",
    default="steward-quickstart",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the embedded registry is created.",
)
@click.option("--keep", is_flag=True, help="Reuse the folder instead of starting afresh.")
@click.pass_obj
def quickstart(obj: StewardContext, folder: str, keep: bool) -> None:
    """Train, register, get refused, fix, promote, audit: on SQLite, with nothing to set up."""
    root = Path(folder).resolve()
    if root.exists() and not keep:
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "steward.yaml"
    config_path.write_text(QUICKSTART_CONFIG)
    db_uri = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["MLFLOW_STEWARD_CONFIG"] = str(config_path)
    os.environ.setdefault("MLFLOW_STEWARD_ACTOR", "quickstart-user")

    click.echo(f"Embedded registry: {db_uri}  (artifacts in {root / 'artifacts'})")
    click.echo(f"Policies: {config_path}")
    click.echo(QUICKSTART_CONFIG.split("\n", 1)[1].rstrip())

    _step(1, "Training models on scikit-learn's breast cancer data set")
    import logging
    import warnings

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.datasets import load_breast_cancer
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    mlflow.set_tracking_uri(db_uri)
    mlflow.set_registry_uri(f"steward+{db_uri}")
    experiment = "steward-quickstart"
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment(experiment)
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

    def train(model, *, signature: bool, label: str) -> str:
        with mlflow.start_run(run_name=label) as run:
            model.fit(X_train, y_train)
            accuracy = float(model.score(X_test, y_test))
            mlflow.log_metric("accuracy", accuracy)
            sig = infer_signature(X_test, model.predict(X_test)) if signature else None
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=sig,
                input_example=X_test.head(3) if signature else None,
            )
        click.echo(
            f"    {label}: accuracy={accuracy:.3f}, signature={'yes' if signature else 'no'}"
        )
        return f"runs:/{run.info.run_id}/model"

    unsigned = train(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
        signature=False,
        label="logreg-unsigned",
    )
    good = train(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
        signature=True,
        label="logreg",
    )
    weak = train(
        DummyClassifier(strategy="uniform", random_state=0), signature=True, label="coin-flip"
    )

    client = MlflowClient()
    name = "breast-cancer"

    _step(2, "Registering the model logged without a signature: mlflow.register_model(...)")
    try:
        mlflow.register_model(unsigned, name)
        raise click.ClickException("the unsigned model was registered: governance is not active")
    except mlflow.exceptions.MlflowException as exc:
        _refused(exc)
    left = client.search_registered_models(f"name = '{name}'")
    click.echo(f"    registered models named {name!r} left behind: {len(left)}")

    _step(3, "Registering the signed models")
    v_good = mlflow.register_model(good, name).version
    v_weak = mlflow.register_model(weak, name).version
    click.echo(f"    version {v_good}: logistic regression, version {v_weak}: coin flip")

    _step(4, f"Promoting version {v_good} to @production (it has no `owner` tag yet)")
    try:
        client.set_registered_model_alias(name, "production", v_good)
    except mlflow.exceptions.MlflowException as exc:
        _refused(exc)

    _step(5, f"Promoting version {v_weak} (coin flip, tagged owner=alice) to @production")
    client.set_model_version_tag(name, v_weak, "owner", "alice")
    try:
        client.set_registered_model_alias(name, "production", v_weak)
    except mlflow.exceptions.MlflowException as exc:
        _refused(exc)

    _step(6, f"Fixing version {v_good}: tag owner=alice, then promote again")
    client.set_model_version_tag(name, v_good, "owner", "alice")
    client.set_registered_model_alias(name, "production", v_good)
    holder = client.get_model_version_by_alias(name, "production").version
    click.secho(
        f"    ALLOWED: models:/{name}@production -> version {holder}", fg="green", bold=True
    )

    _step(7, "The audit log (steward audit log)")
    from mlflow_steward import db
    from mlflow_steward.governance.audit import AuditLog

    log = AuditLog(db.get_engine(db_uri))
    for e in log.entries():
        target = (
            e.model + (f"/{e.version}" if e.version else "") + (f"@{e.alias}" if e.alias else "")
        )
        failed = [r["policy"] for r in e.reasons if not r["allowed"]]
        why = f" by {', '.join(failed)}" if failed else ""
        click.echo(
            f"    #{e.seq:<3} {e.actor} {e.action:<24} {target:<28} {e.decision}{why} ({e.outcome})"
        )

    _step(8, "Verifying the audit chain (steward audit verify)")
    result = log.verify()
    if not result.ok:
        raise click.ClickException(f"audit chain broken: {result.problem}")
    click.secho(f"    audit log OK: {result.entries} entries, hash chain intact", fg="green")
    click.echo("")
    click.echo("Try it yourself:")
    click.echo(f"  export MLFLOW_TRACKING_URI={db_uri} MLFLOW_STEWARD_CONFIG={config_path}")
    click.echo(f"  steward check models:/{name}/{v_weak} --to production")
    click.echo(f"  steward history {name}")
    click.echo("  steward audit verify")
