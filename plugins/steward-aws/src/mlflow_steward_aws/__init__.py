"""AWS for mlflow-steward (entry point ``steward-aws``): the ``steward-sagemaker`` deployment
target and the ``sagemaker`` data source (an endpoint's data capture on S3).

boto3 is imported when a command uses the target or the data source, not when steward loads
plugins, so ``steward`` commands that do not touch AWS stay fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins import DataSource, DeploymentTarget, Option

__version__ = "0.1.0"

TARGET = "steward-sagemaker"

OPTIONS: tuple[Option, ...] = (
    # -- where things go
    Option("bucket", "str", "the S3 bucket the model archive (model.tar.gz) is uploaded to"),
    Option("prefix", "str", "the key prefix of model archives in the bucket", "steward"),
    Option(
        "image_uri",
        "str",
        "the serving image: MLflow's pyfunc image in your registry (as `mlflow sagemaker "
        "build-and-push-container` pushes it)",
    ),
    Option("role_arn", "str", "the IAM role SageMaker assumes to pull the image and the archive"),
    Option("instance_type", "str", "the instance type of the endpoint's variant", "ml.m5.large"),
    Option("instance_count", "int", "instances of the endpoint's variant", 1),
    # -- how to reach AWS (credentials: boto3's standard chain)
    Option("region", "str", "the AWS region (default: boto3's chain, AWS_DEFAULT_REGION...)", ""),
    Option(
        "endpoint_url",
        "str",
        "a SageMaker-compatible endpoint (also used for SageMaker runtime and CloudWatch); "
        "default: AWS's",
        "",
    ),
    Option("s3_endpoint_url", "str", "an S3-compatible endpoint; default: AWS's", ""),
    Option(
        "max_attempts",
        "int",
        "attempts per AWS call under botocore's standard retry mode (throttling is retried)",
        5,
    ),
    # -- rollout: the on-prem target's traffic syntax, mapped to SageMaker's deployment guardrails
    Option(
        "wait",
        "duration",
        "baking time after each traffic shift (a canary's wait, each linear step's wait; "
        "SageMaker's WaitIntervalInSeconds)",
        "300s",
    ),
    Option(
        "linear_step",
        "int",
        "shift traffic in steps of this percent of capacity (LINEAR); 0: all at once, or a "
        "canary with --traffic new=PERCENT",
        0,
    ),
    Option(
        "watch",
        "duration",
        "after the full shift, how long the old fleet stays while the alarms are watched "
        "(SageMaker's TerminationWaitInSeconds)",
        "30s",
    ),
    Option(
        "alarms",
        "str_list",
        "CloudWatch alarms by name: one in ALARM during the update rolls it back (up to 10)",
        [],
    ),
    Option(
        "error_rate_max",
        "number",
        "steward creates a CloudWatch alarm on the new variant's 5xx share of invocations "
        "(Invocation5XXErrors / Invocations over error_rate_window) that rolls an update back "
        "above this fraction; 0: none",
        0.0,
    ),
    Option("error_rate_window", "duration", "the period of that alarm (whole minutes)", "60s"),
    Option(
        "max_execution",
        "duration",
        "how long SageMaker lets an update run before it rolls it back "
        "(MaximumExecutionTimeoutInSeconds, 600s to 8h)",
        "1h",
    ),
    Option(
        "rollout",
        "str",
        "guardrails: SageMaker shifts the traffic (all at once, canary or linear, alarms); "
        "manual: two production variants whose weights steward sets (--traffic new=PERCENT, "
        "again to step, then promote-canary or rollback)",
        "guardrails",
        choices=("guardrails", "manual"),
    ),
    # -- data capture
    Option("data_capture", "bool", "capture requests and responses to S3", False),
    Option("capture_percent", "int", "the percentage of requests captured", 100),
    Option(
        "capture_destination",
        "str",
        "where captures go (default: s3://BUCKET/PREFIX/capture)",
        "",
    ),
    # -- following long steps
    Option("poll_interval", "duration", "how often an endpoint's status is read", "15s"),
    Option(
        "timeout", "duration", "how long a create, update or rollback is followed at most", "1h"
    ),
)

HELP = """steward-sagemaker: serves a registered model version on an Amazon SageMaker endpoint.
The version's artifacts go to S3 as model.tar.gz; steward creates the SageMaker model (MLflow's
pyfunc serving image), an endpoint config and the endpoint, and follows it until it is in service.
Updates use SageMaker's deployment guardrails: blue/green all at once, a canary (--traffic
new=PERCENT, baking for `wait`) or linear steps (`linear_step`), watched by CloudWatch alarms
(`alarms`) that roll the update back automatically; `rollback` returns to the previous endpoint
config. Data capture (`data_capture`) feeds the `sagemaker` monitoring data source. Credentials
and region come from boto3's standard chain.
"""


def _client(target: DeploymentTarget, context: Any) -> Any:
    from mlflow_steward_aws.client import SageMakerClient

    return SageMakerClient(target, context)


def _read_capture(spec: Any, context: Any) -> Any:
    from mlflow_steward_aws.capture import read_capture

    return read_capture(spec, context)


@hookimpl
def steward_deployment_targets() -> Iterator[DeploymentTarget]:
    yield DeploymentTarget(name=TARGET, kind="cloud", client=_client, help=HELP, options=OPTIONS)


@hookimpl
def steward_data_sources() -> Iterator[DataSource]:
    yield DataSource(
        name="sagemaker",
        read=_read_capture,
        help="the data capture of a SageMaker endpoint on S3: a steward-sagemaker deployment's "
        "name, or {endpoint: NAME, destination: s3://...}",
    )
