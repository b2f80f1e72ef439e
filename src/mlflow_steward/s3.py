"""One way to reach S3 for every part of steward that does (edge channels and uploads, the s3
monitor source): boto3, imported when called, with credentials as boto3 finds them and the
endpoint from ``MLFLOW_S3_ENDPOINT_URL`` (MLflow's setting) or ``AWS_ENDPOINT_URL`` (MinIO, moto),
else AWS."""

from __future__ import annotations

import os
from typing import Any


def endpoint_url() -> str | None:
    """The S3 endpoint steward talks to (``None``: AWS)."""
    return os.environ.get("MLFLOW_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None


def client(*, connect_timeout: float = 60, read_timeout: float = 60, attempts: int = 3) -> Any:
    """A boto3 S3 client on :func:`endpoint_url`; short timeouts make an unreachable endpoint fail
    in seconds (boto3's ImportError reaches the caller, who knows which extra to name)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": attempts, "mode": "standard"},
    )
    return boto3.client("s3", endpoint_url=endpoint_url(), config=config)
