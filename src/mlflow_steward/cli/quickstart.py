"""``steward quickstart``: governance and deployment end to end on an embedded registry (SQLite +
local files).

It trains real scikit-learn models on a data set scikit-learn ships, registers them through the
governed ``steward+sqlite`` registry with plain MLflow calls, shows refusals with their reasons,
fixes what was missing and promotes. Then it deploys ``@production`` on-prem (a real MLflow scoring
server behind steward's gateway), sends predictions, updates blue/green under load, shows a bad
release rolled back automatically, and verifies the audit log.
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
@click.option("--port", type=int, default=0, help="The deployment's port (default: a free one).")
@click.option(
    "--keep-serving", is_flag=True, help="Leave the on-prem deployment running at the end."
)
@click.pass_obj
def quickstart(obj: StewardContext, folder: str, keep: bool, port: int, keep_serving: bool) -> None:
    """Train, register, get refused, fix, promote, deploy, update, roll back, audit: on SQLite,
    with nothing to set up."""
    root = Path(folder).resolve()
    if root.exists() and not keep:
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "steward.yaml"
    config_path.write_text(QUICKSTART_CONFIG)
    db_uri = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["MLFLOW_STEWARD_CONFIG"] = str(config_path)
    os.environ.setdefault("MLFLOW_STEWARD_ACTOR", "quickstart-user")
    os.environ["MLFLOW_STEWARD_HOME"] = str(root / "home")

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

    deployment = _deploy_steps(root, db_uri, name, port, X_test, y_test, X_train, y_train)

    try:
        _monitor_steps(config_path, db_uri, name, deployment, X_train, y_train, X_test, y_test)

        _step(15, "The audit log (steward audit log)")
        from mlflow_steward.records import db
        from mlflow_steward.records.audit import AuditLog

        log = AuditLog(db.get_engine(db_uri))
        for e in log.entries():
            target = (
                e.model
                + (f"/{e.version}" if e.version else "")
                + (f"@{e.alias}" if e.alias else "")
            )
            failed = [r["policy"] for r in e.reasons if not r["allowed"]]
            why = f" by {', '.join(failed)}" if failed else ""
            click.echo(
                f"    #{e.seq:<3} {e.actor:<16} {e.action:<26} {target:<26} {e.decision}{why} "
                f"({e.outcome[:70]})"
            )

        _step(16, "Verifying the audit chain (steward audit verify)")
        result = log.verify()
        if not result.ok:
            raise click.ClickException(f"audit chain broken: {result.problem}")
        click.secho(f"    audit log OK: {result.entries} entries, hash chain intact", fg="green")
    finally:
        if keep_serving:
            click.echo(f"    deployment {name!r} keeps serving at {deployment.endpoint}")
        else:
            deployment.host.delete(name)
            click.echo(f"    deployment {name!r} stopped (--keep-serving leaves it running)")
    click.echo("")
    click.echo("Try it yourself:")
    click.echo(
        f"  export MLFLOW_TRACKING_URI={db_uri} MLFLOW_STEWARD_CONFIG={config_path} "
        f"MLFLOW_STEWARD_HOME={root / 'home'}"
    )
    click.echo(f"  steward check models:/{name}/{v_weak} --to production")
    click.echo(f"  steward history {name}")
    click.echo(f"  steward deploy history {name}")
    click.echo("  steward monitor run --monitor breast-cancer-production")
    if keep_serving:
        click.echo(f"  steward deploy status {name}")
        click.echo(f"  steward deploy delete {name}")
    click.echo("  steward audit verify")


MONITOR_CONFIG = """
monitors:
  breast-cancer-production:
    model: models:/breast-cancer@production
    data: {requests: breast-cancer}
    window: since-last-run
    rules:
      - when: drift
        do: [rollback]
"""


def _monitor_steps(config_path, db_uri, name, deployment, X_train, y_train, X_test, y_test) -> None:
    """Steps 12-14: a release trained with log_baseline serves; the monitor judges its traffic
    (healthy, then drifted) and its rule rolls @production and the deployment back."""
    import json
    import time
    import urllib.request

    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import mlflow_steward as steward
    from mlflow_steward.errors import MonitoringError
    from mlflow_steward.lifecycle.session import StewardSession
    from mlflow_steward.monitoring.data import read_request_logs, request_log_dir
    from mlflow_steward.monitoring.runner import MonitorRunner

    host, endpoint = deployment.host, deployment.endpoint
    _step(12, "A release trained with steward.log_baseline(...), deployed to follow @production")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=2.0, max_iter=1000))
    with mlflow.start_run(run_name="logreg-c2-baseline"):
        model.fit(X_train, y_train)
        mlflow.log_metric("accuracy", float(model.score(X_test, y_test)))
        logged = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X_test, model.predict(X_test)),
            input_example=X_test.head(3),
        )
        steward.log_baseline(X_train, y_train, model.predict(X_train), model_info=logged)
    version = str(mlflow.register_model(logged.model_uri, name).version)
    client = MlflowClient()
    client.set_model_version_tag(name, version, "owner", "alice")
    client.set_registered_model_alias(name, "production", version)
    info = host.update(name, f"models:/{name}@production")
    click.echo(
        f"    version {version} holds @production, with its training data as the monitoring "
        f"baseline; the deployment serves v{info.version} and follows the alias"
    )
    config_path.write_text(config_path.read_text() + MONITOR_CONFIG)
    click.echo(
        "    monitor added to steward.yaml:" + MONITOR_CONFIG.rstrip().replace("\n", "\n    ")
    )

    def send(rows) -> None:
        for start in range(0, len(rows), 10):
            part = rows.iloc[start : start + 10]
            body = json.dumps({"dataframe_split": part.to_dict(orient="split", index=False)})
            request = urllib.request.Request(
                f"{endpoint}/invocations",
                data=body.encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30):
                pass

    session = StewardSession(registry_uri=f"steward+{db_uri}", tracking_uri=db_uri)
    folder = request_log_dir(session, name)

    def logged_rows(expected: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if len(read_request_logs(folder, version)) >= expected:
                    return
            except MonitoringError:
                pass
            time.sleep(0.3)

    def monitor(title: str) -> object:
        [result] = MonitorRunner(session).run()
        color = {"healthy": "green", "drift": "yellow"}.get(result.status, "red")
        click.secho(
            f"    {title}: {result.status.upper()} on {result.rows} logged rows of v{result.version}",
            fg=color,
            bold=True,
        )
        if result.error:
            raise click.ClickException(f"the monitor failed: {result.error}")
        if result.drifted:
            shown = ", ".join(result.drifted[:6]) + (" ..." if len(result.drifted) > 6 else "")
            click.echo(
                f"      drifted: {len(result.drifted)} columns ({shown}), share {result.share:.2f}"
            )
        click.echo(
            f"      MLflow run {result.run_id} (experiment steward-monitoring): report.html with "
            "a plot per column"
        )
        for action in result.actions:
            click.echo(f"      rule -> {action['action']}: {action['result']}")
        return result

    _step(13, f"Monitoring normal traffic: {len(X_test)} rows, then `steward monitor run`")
    send(X_test)
    logged_rows(len(X_test))
    monitor("verdict")

    _step(14, "Drifted traffic: a recalibrated scanner reads every 'mean'/'worst' value 40% high")
    shifted = X_test.copy()
    scaled = [c for c in shifted.columns if c.startswith(("mean", "worst"))]
    shifted[scaled] = shifted[scaled] * 1.4
    send(shifted)
    logged_rows(2 * len(X_test))
    result = monitor("verdict")
    holder = client.get_model_version_by_alias(name, "production").version
    served = host.get(name).version
    if result.status != "drift" or str(holder) == version:
        raise click.ClickException("the drifted traffic did not roll @production back")
    click.secho(
        f"    ROLLED BACK by the monitor: @production -> v{holder}, deployment serving v{served} "
        "(through governance, as steward-monitor)",
        fg="yellow",
        bold=True,
    )


class _Deployed:
    def __init__(self, host, endpoint: str) -> None:
        self.host = host
        self.endpoint = endpoint


def _deploy_steps(root, db_uri, name, port, X_test, y_test, X_train, y_train) -> _Deployed:
    """Steps 7-11: deploy @production on-prem, predict, blue/green update, automatic rollback."""
    import json
    import threading
    import time
    import urllib.error
    import urllib.request

    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from mlflow_steward.deployment.host import DeploymentHost
    from mlflow_steward.deployment.onprem.ports import free_port
    from mlflow_steward.lifecycle.session import StewardSession

    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    host = DeploymentHost(
        StewardSession(registry_uri=f"steward+{db_uri}", tracking_uri=db_uri),
        progress=lambda message: click.echo(f"      {message}"),
    )
    options = {
        "port": port,
        "drain": "1s",
        "watch": "30s",
        "error_rate_min_requests": 10,
        "error_rate_window": "30s",
    }

    def predict(rows) -> tuple[int, str, object]:
        body = json.dumps({"dataframe_split": rows.to_dict(orient="split", index=False)})
        request = urllib.request.Request(
            f"{endpoint}/invocations",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                version = response.headers.get("X-Steward-Model-Version", "?")
                return response.status, version, json.loads(response.read())["predictions"]
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("X-Steward-Model-Version", "?"), None

    _step(7, f"Deploying models:/{name}@production on-prem (steward deploy create)")
    info = host.create(name, f"models:/{name}@production", target="steward-onprem", config=options)
    click.secho(
        f"    SERVING: version {info.version} at {endpoint} (gateway + MLflow scoring server)",
        fg="green",
        bold=True,
    )

    try:
        _step(8, f"Predicting through the gateway: POST {endpoint}/invocations")
        rows = X_test.head(5)
        status, version, predictions = predict(rows)
        click.echo(f"    HTTP {status} from v{version}: predictions {predictions}")
        click.echo(f"    true labels:               {y_test.head(5).tolist()}")

        def under_load(work, *, clients: int = 2) -> tuple[object, dict]:
            # Each client keeps its own counts and the versions it was answered by, in its own
            # order: merged in arrival order, an answer sent just before the switch could land
            # after one sent just after it, and read as a switch back.
            per_client = [{"ok": 0, "failed": 0, "versions": []} for _ in range(clients)]
            stop = threading.Event()

            def client(mine: dict) -> None:
                while not stop.is_set():
                    code, version, _ = predict(rows)
                    mine["ok" if code == 200 else "failed"] += 1
                    if not mine["versions"] or mine["versions"][-1] != version:
                        mine["versions"].append(version)

            threads = [
                threading.Thread(target=client, args=(mine,), daemon=True) for mine in per_client
            ]
            for t in threads:
                t.start()
            try:
                result = work()
            finally:
                stop.set()
                for t in threads:
                    t.join(timeout=30)
            seen = {
                "ok": sum(c["ok"] for c in per_client),
                "failed": sum(c["failed"] for c in per_client),
                # the client that saw the most changes (a switch back would show there)
                "versions": max((c["versions"] for c in per_client), key=len),
            }
            return result, seen

        mlflow.set_tracking_uri(db_uri)
        mlflow.set_registry_uri(f"steward+{db_uri}")
        client = MlflowClient()

        _step(9, "Training a new release, promoting it, and updating the deployment blue/green")
        better = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=1000))
        with mlflow.start_run(run_name="logreg-c0.5"):
            better.fit(X_train, y_train)
            accuracy = float(better.score(X_test, y_test))
            mlflow.log_metric("accuracy", accuracy)
            logged = mlflow.sklearn.log_model(
                better,
                name="model",
                signature=infer_signature(X_test, better.predict(X_test)),
                input_example=X_test.head(3),
            )
        v_new = str(mlflow.register_model(logged.model_uri, name).version)
        client.set_model_version_tag(name, v_new, "owner", "alice")
        client.set_registered_model_alias(name, "production", v_new)
        click.echo(f"    version {v_new} (accuracy {accuracy:.3f}) now holds @production")

        def update_then_serve_a_while():
            result = host.update(name)
            time.sleep(1.0)
            return result

        updated, seen = under_load(update_then_serve_a_while)
        click.secho(
            f"    SWITCHED to version {updated.version}: {seen['ok']} requests during the update, "
            f"{seen['failed']} failed; answered by "
            + " then ".join(f"v{v}" for v in seen["versions"]),
            fg="green",
            bold=True,
        )

        _step(10, "Updating to a bad release: its preprocessing only handles batches of 3 rows")
        fitted = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(
            X_train, y_train
        )
        n_features = X_train.shape[1]
        broken = Pipeline(
            [
                ("reshape", FunctionTransformer(np.reshape, kw_args={"shape": (3, n_features)})),
                ("model", fitted),
            ]
        )
        with mlflow.start_run(run_name="logreg-broken-reshape"):
            mlflow.log_metric("accuracy", float(fitted.score(X_test, y_test)))
            logged = mlflow.sklearn.log_model(
                broken,
                name="model",
                signature=infer_signature(X_test, fitted.predict(X_test)),
                input_example=X_test.head(3),
                skops_trusted_types=["numpy.reshape"],
            )
        v_bad = str(mlflow.register_model(logged.model_uri, name).version)
        click.echo(
            f"    version {v_bad} answers its 3-row input example, so it passes the health gate..."
        )

        def bad_update():
            result = host.update(name, f"models:/{name}/{v_bad}")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and host.get(name).version == v_bad:
                time.sleep(0.2)
            return result

        _, seen = under_load(bad_update)
        info = host.get(name)
        click.echo(
            f"    ...but failed {seen['failed']} of {seen['ok'] + seen['failed']} real requests "
            "(batches of 5 rows)"
        )
        if info.version == v_bad:
            raise click.ClickException("the bad release was not rolled back")
        click.secho(
            f"    ROLLED BACK automatically to version {info.version}: {info.reason}",
            fg="yellow",
            bold=True,
        )

        _step(11, f"The deployment's history (steward deploy history {name})")
        for s in host.store.history(name):
            move = f"v{s.from_version} -> v{s.version}" if s.from_version else f"v{s.version}"
            click.echo(
                f"    {s.kind:<14} {move:<10} by {s.actor}"
                + (f": {s.reason[:90]}" if s.reason else "")
            )
    except BaseException:
        host.delete(name)  # nothing keeps running after a failed quickstart
        raise
    return _Deployed(host, endpoint)
