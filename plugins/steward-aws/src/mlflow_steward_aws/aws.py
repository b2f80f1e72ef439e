"""boto3 clients for a deployment's options, and AWS errors as messages that say what to do."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from mlflow_steward.errors import DeploymentError

T = TypeVar("T")

#: Error codes of a missing resource (SageMaker says ValidationException "Could not find ...").
_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
}
_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
}


@dataclass
class Clients:
    """The boto3 clients of one deployment (created when first used)."""

    options: Mapping[str, Any]

    def __post_init__(self) -> None:
        self._made: dict[str, Any] = {}

    def _client(self, service: str, endpoint: str) -> Any:
        if service not in self._made:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={
                    "mode": "standard",
                    "total_max_attempts": int(self.options["max_attempts"]),
                },
                user_agent_extra="mlflow-steward",
            )
            self._made[service] = boto3.session.Session().client(
                service,
                region_name=self.options.get("region") or None,
                endpoint_url=endpoint or None,
                config=config,
            )
        return self._made[service]

    @property
    def region(self) -> str:
        return str(self.sagemaker.meta.region_name)

    @property
    def s3(self) -> Any:
        return self._client("s3", self.options.get("s3_endpoint_url", ""))

    @property
    def sagemaker(self) -> Any:
        return self._client("sagemaker", self.options.get("endpoint_url", ""))

    @property
    def runtime(self) -> Any:
        return self._client("sagemaker-runtime", self.options.get("endpoint_url", ""))

    @property
    def cloudwatch(self) -> Any:
        return self._client("cloudwatch", self.options.get("endpoint_url", ""))


def code_of(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def message_of(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Message", "")) or str(exc)


def is_missing(exc: BaseException) -> bool:
    """A resource that does not exist (deleting it again is not an error)."""
    code, message = code_of(exc), message_of(exc).lower()
    return code in ("NoSuchKey", "NoSuchBucket", "ResourceNotFound", "404") or (
        code == "ValidationException" and ("could not find" in message or "not found" in message)
    )


def explain(exc: BaseException, doing: str) -> DeploymentError:
    """An AWS error while ``doing`` (``"creating endpoint config x"``) as a DeploymentError whose
    message says what to do."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
    )

    if isinstance(exc, NoCredentialsError):
        return DeploymentError(
            f"{doing}: no AWS credentials found; configure boto3's standard chain "
            "(AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, an instance role...)"
        )
    if isinstance(exc, NoRegionError):
        return DeploymentError(
            f"{doing}: no AWS region; set the target's `region` option (-C region=eu-west-1) "
            "or AWS_DEFAULT_REGION"
        )
    if isinstance(exc, EndpointConnectionError):
        return DeploymentError(
            f"{doing}: cannot reach {exc.kwargs.get('endpoint_url', 'AWS')}; check the network, "
            "the region and the `endpoint_url`/`s3_endpoint_url` options"
        )
    if isinstance(exc, ClientError):
        code, message = code_of(exc), message_of(exc)
        if code in _DENIED:
            return DeploymentError(
                f"{doing}: AWS denied access ({code}: {message}); give the caller the "
                "permissions in docs/sagemaker.md (the least-privilege IAM policy) and check "
                "that role_arn may be passed (iam:PassRole)"
            )
        if code in _THROTTLED:
            return DeploymentError(
                f"{doing}: AWS throttled the request ({code}) after the retries of botocore's "
                "standard mode; try again later, raise -C max_attempts, or ask AWS for a higher "
                "request rate"
            )
        if code == "ResourceLimitExceeded":
            return DeploymentError(
                f"{doing}: an AWS service quota is reached ({message}); delete unused "
                "endpoints, pick another instance_type, or request a quota increase "
                "(Service Quotas, SageMaker)"
            )
        return DeploymentError(f"{doing}: AWS refused ({code}: {message})")
    if isinstance(exc, BotoCoreError):
        return DeploymentError(f"{doing}: {type(exc).__name__}: {exc}")
    return DeploymentError(f"{doing}: {type(exc).__name__}: {exc}")


@contextmanager
def aws(doing: str) -> Iterator[None]:
    """AWS errors raised inside become :func:`explain`'s DeploymentError."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise explain(exc, doing) from exc


def call(doing: str, work: Callable[[], T]) -> T:
    with aws(doing):
        return work()
