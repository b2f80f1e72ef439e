"""The guided demo ``steward quickstart`` runs: governance and deployment end to end on an
embedded registry (SQLite + local files).

It trains real scikit-learn models on a data set scikit-learn ships, registers them through the
governed ``steward+sqlite`` registry with plain MLflow calls, shows refusals with their reasons,
fixes what was missing and promotes. Then it deploys ``@production`` on-prem (a real MLflow scoring
server behind steward's gateway), sends predictions, updates blue/green under load, shows a bad
release rolled back automatically, and lets a monitor roll back a drifting release. Then it
publishes to edge devices (a TUF channel in a folder, two agent processes), lets a monitor judge
their statistics and roll them back, and verifies the audit log.

Modules, by job: :mod:`.data` (the workspace, its environment, the data set), :mod:`.training`,
:mod:`.governance`, :mod:`.deploy` (with :mod:`.gateway`), :mod:`.monitor`, :mod:`.edge`,
:mod:`.audit` and :mod:`.output`. MLflow, pandas and scikit-learn are imported by the functions that use them.
"""

from __future__ import annotations

import click

from mlflow_steward.demo import output
from mlflow_steward.demo.audit import audit_steps
from mlflow_steward.demo.data import DemoData, Workspace
from mlflow_steward.demo.deploy import deploy_steps
from mlflow_steward.demo.edge import edge_steps
from mlflow_steward.demo.governance import governance_steps
from mlflow_steward.demo.monitor import monitor_steps
from mlflow_steward.demo.training import train_first_models

__all__ = ["DemoData", "Workspace", "run"]


def run(folder: str, *, keep: bool = False, port: int = 0, keep_serving: bool = False) -> None:
    """The whole demo in ``folder`` (emptied first unless ``keep``); the deployment listens on
    ``port`` (0: a free one) and, with ``keep_serving``, keeps running afterwards."""
    workspace = Workspace.create(folder, keep=keep)
    with workspace.environment():
        output.setup(workspace)
        output.step(1, "Training models on scikit-learn's breast cancer data set")
        _quiet()
        workspace.open_experiment()
        data = DemoData.load(workspace)
        refused_version = governance_steps(data, train_first_models(data))
        deployment = deploy_steps(data, port)
        try:
            monitor_steps(data, deployment)
        finally:
            # Stopped before the edge leg, whose rollback would move it too (it follows
            # @production), unless it is to keep serving.
            if keep_serving:
                click.echo(f"    deployment {data.name!r} keeps serving at {deployment.endpoint}")
            else:
                deployment.host.delete(data.name)
                click.echo(
                    f"    deployment {data.name!r} stopped (--keep-serving leaves it running)"
                )
        edge_steps(data)
        audit_steps(workspace)
    output.try_it_yourself(workspace, data.name, refused_version, keep_serving)


def _quiet() -> None:
    """MLflow's logging and the libraries' warnings off: the demo prints what happens."""
    import logging
    import warnings

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
