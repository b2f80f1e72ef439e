"""Steps 12-14: a release trained with log_baseline serves; the monitor judges its traffic
(healthy, then drifted) and its rule rolls @production and the deployment back."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mlflow_steward.demo import gateway
from mlflow_steward.demo.data import DemoData
from mlflow_steward.demo.deploy import Deployment
from mlflow_steward.demo.governance import promote
from mlflow_steward.demo.output import step
from mlflow_steward.demo.training import log_model

if TYPE_CHECKING:
    import pandas as pd

    from mlflow_steward.lifecycle.session import StewardSession
    from mlflow_steward.monitoring.runner import MonitorRun

CONFIG = """
monitors:
  breast-cancer-production:
    model: models:/breast-cancer@production
    data: {requests: breast-cancer}
    window: since-last-run
    rules:
      - when: drift
        do: [rollback]
"""


def monitor_steps(data: DemoData, deployment: Deployment) -> None:
    """Steps 12-14."""
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlflow_steward.monitoring.data import request_log_dir

    name, host, endpoint = data.name, deployment.host, deployment.endpoint
    step(12, "A release trained with steward.log_baseline(...), deployed to follow @production")
    model = data.fit(make_pipeline(StandardScaler(), LogisticRegression(C=2.0, max_iter=1000)))
    logged, _ = log_model(data, model, "logreg-c2-baseline", fitted=model, baseline=True)
    version = promote(data, logged.model_uri)
    info = host.update(name, f"models:/{name}@production")
    click.echo(
        f"    version {version} holds @production, with its training data as the monitoring "
        f"baseline; the deployment serves v{info.version} and follows the alias"
    )
    config_path = data.workspace.config_path
    config_path.write_text(config_path.read_text() + CONFIG)
    click.echo("    monitor added to steward.yaml:" + CONFIG.rstrip().replace("\n", "\n    "))

    session = data.workspace.session()
    folder = request_log_dir(session, name)

    step(13, f"Monitoring normal traffic: {len(data.X_test)} rows, then `steward monitor run`")
    gateway.send(endpoint, data.X_test)
    _wait_for_logged_rows(folder, version, len(data.X_test))
    judge(session, "verdict")

    step(14, "Drifted traffic: a recalibrated scanner reads every 'mean'/'worst' value 40% high")
    gateway.send(endpoint, recalibrated(data.X_test))
    _wait_for_logged_rows(folder, version, 2 * len(data.X_test))
    result = judge(session, "verdict")
    holder = MlflowClient().get_model_version_by_alias(name, "production").version
    served = host.get(name).version
    if result.status != "drift" or str(holder) == version:
        raise click.ClickException("the drifted traffic did not roll @production back")
    click.secho(
        f"    ROLLED BACK by the monitor: @production -> v{holder}, deployment serving v{served} "
        "(through governance, as steward-monitor)",
        fg="yellow",
        bold=True,
    )


def _wait_for_logged_rows(folder: Path, version: str, expected: int) -> None:
    """Waits (30 s at most) until the request log holds ``expected`` rows of ``version``."""
    from mlflow_steward.errors import MonitoringError
    from mlflow_steward.monitoring.data import read_request_logs

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if len(read_request_logs(folder, version)) >= expected:
                return
        except MonitoringError:
            pass
        time.sleep(0.3)


def recalibrated(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` as a recalibrated scanner reads them: every 'mean'/'worst' value 40% high."""
    shifted = rows.copy()
    scaled = [c for c in shifted.columns if c.startswith(("mean", "worst"))]
    shifted[scaled] = shifted[scaled] * 1.4
    return shifted


def judge(
    session: StewardSession,
    title: str,
    monitors: tuple[str, ...] = (),
    *,
    what: str = "logged rows",
) -> MonitorRun:
    """Runs the one monitor of ``monitors`` (every monitor when empty: ``steward monitor run``)
    and shows its verdict on ``what``."""
    from mlflow_steward.monitoring.runner import MonitorRunner

    [result] = MonitorRunner(session).run(monitors)
    color = {"healthy": "green", "drift": "yellow"}.get(result.status, "red")
    click.secho(
        f"    {title}: {result.status.upper()} on {result.rows} {what} of v{result.version}",
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
