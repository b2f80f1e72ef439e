"""Steps 7-11: @production deployed on-prem, predictions through the gateway, a blue/green update
under load, and a bad release rolled back automatically."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import click

from mlflow_steward.demo import gateway
from mlflow_steward.demo.data import DemoData
from mlflow_steward.demo.governance import promote
from mlflow_steward.demo.output import step
from mlflow_steward.demo.training import log_model

if TYPE_CHECKING:
    from mlflow_steward.deployment.host import DeploymentHost
    from mlflow_steward.plugins.targets import DeploymentInfo

Result = TypeVar("Result")


@dataclass(frozen=True)
class Deployment:
    """The running deployment: its host (to update, read and delete it) and its endpoint."""

    host: DeploymentHost
    endpoint: str


@dataclass
class Traffic:
    """Requests answered, failed, and the versions that answered in turn."""

    ok: int = 0
    failed: int = 0
    versions: list[str] = field(default_factory=list)


def under_load(
    work: Callable[[], Result], request: Callable[[], tuple[int, str, object]], *, clients: int = 2
) -> tuple[Result, Traffic]:
    """Runs ``work`` while ``clients`` threads send ``request`` again and again."""
    # Each client keeps its own counts and the versions it was answered by, in its own
    # order: merged in arrival order, an answer sent just before the switch could land
    # after one sent just after it, and read as a switch back.
    per_client = [Traffic() for _ in range(clients)]
    stop = threading.Event()

    def client(mine: Traffic) -> None:
        while not stop.is_set():
            code, version, _ = request()
            if code == 200:
                mine.ok += 1
            else:
                mine.failed += 1
            if not mine.versions or mine.versions[-1] != version:
                mine.versions.append(version)

    threads = [threading.Thread(target=client, args=(mine,), daemon=True) for mine in per_client]
    for t in threads:
        t.start()
    try:
        result = work()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    seen = Traffic(
        ok=sum(c.ok for c in per_client),
        failed=sum(c.failed for c in per_client),
        # the client that saw the most changes (a switch back would show there)
        versions=max((c.versions for c in per_client), key=len),
    )
    return result, seen


def deploy_steps(data: DemoData, port: int) -> Deployment:
    """Steps 7-11; the deployment keeps serving @production (deleted if a step fails)."""
    from mlflow_steward.deployment.host import DeploymentHost
    from mlflow_steward.deployment.onprem.ports import free_port

    name = data.name
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    host = DeploymentHost(
        data.workspace.session(), progress=lambda message: click.echo(f"      {message}")
    )
    options = {
        "port": port,
        "drain": "1s",
        "watch": "30s",
        "error_rate_min_requests": 10,
        "error_rate_window": "30s",
    }

    step(7, f"Deploying models:/{name}@production on-prem (steward deploy create)")
    info = host.create(name, f"models:/{name}@production", target="steward-onprem", config=options)
    click.secho(
        f"    SERVING: version {info.version} at {endpoint} (gateway + MLflow scoring server)",
        fg="green",
        bold=True,
    )
    deployment = Deployment(host, endpoint)
    try:
        _predict_step(data, deployment)
        _update_steps(data, deployment)
        step(11, f"The deployment's history (steward deploy history {name})")
        for s in host.store.history(name):
            move = f"v{s.from_version} -> v{s.version}" if s.from_version else f"v{s.version}"
            click.echo(
                f"    {s.kind:<14} {move:<10} by {s.actor}"
                + (f": {s.reason[:90]}" if s.reason else "")
            )
    except BaseException:
        host.delete(name)  # nothing keeps running after a failed quickstart
        raise
    return deployment


def _predict_step(data: DemoData, deployment: Deployment) -> None:
    step(8, f"Predicting through the gateway: POST {deployment.endpoint}/invocations")
    status, version, predictions = gateway.predict(deployment.endpoint, data.X_test.head(5))
    click.echo(f"    HTTP {status} from v{version}: predictions {predictions}")
    click.echo(f"    true labels:               {data.y_test.head(5).tolist()}")


def _update_steps(data: DemoData, deployment: Deployment) -> None:
    """Steps 9-10: a better release switched to blue/green, a bad one rolled back."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    name, host = data.name, deployment.host
    rows = data.X_test.head(5)

    def request() -> tuple[int, str, object]:
        return gateway.predict(deployment.endpoint, rows)

    data.workspace.connect()

    step(9, "Training a new release, promoting it, and updating the deployment blue/green")
    better = data.fit(make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=1000)))
    logged, accuracy = log_model(data, better, "logreg-c0.5", fitted=better)
    v_new = promote(data, logged.model_uri)
    click.echo(f"    version {v_new} (accuracy {accuracy:.3f}) now holds @production")

    def update_then_serve_a_while() -> DeploymentInfo:
        result = host.update(name)
        time.sleep(1.0)
        return result

    updated, seen = under_load(update_then_serve_a_while, request)
    click.secho(
        f"    SWITCHED to version {updated.version}: {seen.ok} requests during the update, "
        f"{seen.failed} failed; answered by " + " then ".join(f"v{v}" for v in seen.versions),
        fg="green",
        bold=True,
    )

    step(10, "Updating to a bad release: its preprocessing only handles batches of 3 rows")
    fitted = data.fit(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)))
    n_features = data.X_train.shape[1]
    broken = Pipeline(
        [
            ("reshape", FunctionTransformer(np.reshape, kw_args={"shape": (3, n_features)})),
            ("model", fitted),
        ]
    )
    logged, _ = log_model(
        data,
        broken,
        "logreg-broken-reshape",
        fitted=fitted,
        skops_trusted_types=["numpy.reshape"],
    )
    v_bad = str(mlflow.register_model(logged.model_uri, name).version)
    click.echo(
        f"    version {v_bad} answers its 3-row input example, so it passes the health gate..."
    )

    def bad_update() -> DeploymentInfo:
        result = host.update(name, f"models:/{name}/{v_bad}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and host.get(name).version == v_bad:
            time.sleep(0.2)
        return result

    _, seen = under_load(bad_update, request)
    info = host.get(name)
    click.echo(
        f"    ...but failed {seen.failed} of {seen.ok + seen.failed} real requests "
        "(batches of 5 rows)"
    )
    if info.version == v_bad:
        raise click.ClickException("the bad release was not rolled back")
    click.secho(
        f"    ROLLED BACK automatically to version {info.version}: {info.reason}",
        fg="yellow",
        bold=True,
    )
