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
    Option(
        "onnx",
        "bool",
        "build the bundle with the scikit-learn model converted to ONNX and its parity check "
        "(needs the edge-onnx extra)",
        default=False,
    ),
    Option(
        "parity_tolerance",
        "number",
        "largest difference, relative to max(1, |value|), between the ONNX model's outputs and "
        "the original's (checked at build and again before publishing)",
        default=1e-5,
    ),
)

HELP = """steward-edge: publishes a registered model version to a TUF channel that edge agents
read. The version is built into one self-contained bundle (model, pinned requirements, content
digest, input example, baseline summaries, manifest) and added to the channel as its newest
release; targets, snapshot and timestamp metadata are signed again, atomically for readers.
A version published before is published again as it was (a rollback). Policies (edge-bundle)
decide each step on facts steward measures from the bundle before publishing it: its size, its
files and model digest, and its ONNX parity check run again. Devices keep what they
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
