"""Built-in plugin: the ``steward-edge`` deployment target (kind ``edge``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins.types import DeploymentTarget, Option

OPTIONS: tuple[Option, ...] = (
    Option(
        "channel",
        "str",
        "the channel: a folder or s3://bucket/prefix (created by `steward edge channel init`)",
    ),
    Option(
        "keys",
        "str",
        "the folder with the channel's targets, snapshot and timestamp keys (<role>-<n>.pem); "
        "keys in STEWARD_EDGE_KEY_<ROLE> variables are used too",
        default="",
    ),
)

HELP = """steward-edge: publishes a registered model version to a TUF channel that edge agents
read. The version is built into one self-contained bundle (model, pinned requirements, content
digest, input example, baseline summaries, manifest) and added to the channel as its newest
release; targets, snapshot and timestamp metadata are signed again, atomically for readers.
A version published before is published again as it was (a rollback). Devices keep what they
installed when a deployment is deleted: publish another version to move them. Needs the edge
extra: pip install 'mlflow-steward[edge]'.
"""


def _client(target: DeploymentTarget, context: Any) -> Any:
    from mlflow_steward.deployment.edge.client import EdgeClient

    return EdgeClient(target, context)


@hookimpl
def steward_deployment_targets() -> Iterator[DeploymentTarget]:
    yield DeploymentTarget(
        name="steward-edge", kind="edge", client=_client, help=HELP, options=OPTIONS
    )
