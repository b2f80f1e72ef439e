"""The ``steward-sagemaker`` target's client: a registered version on a SageMaker endpoint.

Every AWS resource a step makes is written into the deployment's runtime record (in the registry
database) right after AWS answers, so a step that stops midway leaves a record ``delete`` works
from; a failed create also deletes what it made before it reports the failure.

The runtime record::

    {"region": ..., "endpoint": NAME, "endpoint_arn": ..., "config": CURRENT_CONFIG,
     "previous_config": ..., "releases": [{"version", "model", "config", "variant",
     "model_data"}, ...], "last_update": {"config", "deployment_config", "outcome",
     "statuses", "reason"}}
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow_steward.errors import DeploymentError
from mlflow_steward.plugins import DeploymentInfo, ResolvedModel, TargetClient
from mlflow_steward_aws.aws import Clients, aws, call, explain, is_missing
from mlflow_steward_aws.guardrails import deployment_config, describe

#: Options that say where the endpoint lives: fixed at create.
PINNED = ("region", "endpoint_url", "s3_endpoint_url")
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
#: Endpoint states a step waits through; the others end it.
_MOVING = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}


def _resource_name(endpoint: str, version: str) -> str:
    """``<endpoint>-v<version>-<random>`` within SageMaker's 63 characters."""
    suffix = f"-v{version}-{secrets.token_hex(3)}"
    return endpoint[: 63 - len(suffix)].rstrip("-") + suffix


class SageMakerClient(TargetClient):
    """Create, update (deployment guardrails), roll back and delete SageMaker endpoints."""

    # -- checks before anything starts ---------------------------------------------------------

    def validate(self, name: str, options: Mapping[str, Any]) -> None:
        if not _NAME.match(name):
            raise DeploymentError(
                f"deployment name {name!r} cannot name a SageMaker endpoint: use up to 63 "
                "letters, digits and hyphens, starting with a letter or digit"
            )
        deployment_config(options, None)
        if not 0 < int(options["capture_percent"]) <= 100:
            raise DeploymentError(
                f"capture_percent={options['capture_percent']}: give a percentage from 1 to 100"
            )
        if int(options["instance_count"]) < 1:
            raise DeploymentError("instance_count must be at least 1")
        if int(options["max_attempts"]) < 1:
            raise DeploymentError("max_attempts must be at least 1 (the first call counts)")
        window = int(options["error_rate_window"])
        if window % 60 or not window:
            raise DeploymentError(
                f"error_rate_window={window}s: CloudWatch alarms read whole minutes (60s, 5m...)"
            )
        if not 0 <= float(options["error_rate_max"]) < 1:
            raise DeploymentError("error_rate_max: a fraction from 0 (no alarm) to below 1")
        recorded = self.context.store.get(name)
        pinned = recorded.runtime.get("pinned", {}) if recorded is not None else {}
        moved = [
            key
            for key in PINNED
            if key in pinned
            and options.get(key) != pinned[key]
            and (key != "region" or options.get(key))
        ]
        if moved:
            where = pinned.get("region", "")
            if pinned.get("endpoint_url"):
                where += f" at {pinned['endpoint_url']}"
            raise DeploymentError(
                f"{', '.join(moved)} of deployment {name!r} cannot change: its endpoint and "
                f"resources are in {where}; delete the deployment and create it again there"
            )
        destination = options.get("capture_destination") or ""
        if destination and not destination.startswith("s3://"):
            raise DeploymentError(f"capture_destination={destination!r}: give an s3:// URI")

    # -- helpers -------------------------------------------------------------------------------

    def _clients(self, info: DeploymentInfo) -> Clients:
        """Clients where the deployment's resources are: the region and endpoints recorded at
        create (``validate`` refuses an update that names others)."""
        return Clients({**info.options, **info.runtime.get("pinned", {})})

    def _say(self, message: str) -> None:
        self.context.progress(message)

    def _save(self, info: DeploymentInfo) -> None:
        self.context.store.set_runtime(info.name, info.runtime)

    def _download(self, model: ResolvedModel, into: Path) -> Path:
        """The version's artifacts, checked against the content digest recorded at
        registration (what governance approved is what is packaged)."""
        import mlflow.artifacts
        from mlflow import MlflowClient

        from mlflow_steward.governance.digest import digest_local
        from mlflow_steward.plugins.events import DIGEST_TAG

        client = MlflowClient(self.context.tracking_uri, self.context.registry_uri)
        try:
            version = client.get_model_version(model.name, model.version)
            source = client.get_model_version_download_uri(model.name, model.version)
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=source, dst_path=str(into), tracking_uri=self.context.tracking_uri
                )
            )
        except Exception as exc:
            raise DeploymentError(
                f"cannot download {model.requested} (version {model.version}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not (local / "MLmodel").is_file():
            raise DeploymentError(f"{model.requested} has no MLmodel file: not an MLflow model")
        recorded = version.tags.get(DIGEST_TAG)
        if recorded:
            found = digest_local(local).digest
            if found != recorded:
                raise DeploymentError(
                    f"the artifacts of {model.name} v{model.version} changed after governance "
                    f"checked them (digest {found}, registered {recorded}); nothing was deployed"
                )
        return local

    def _package(self, info: DeploymentInfo, model: ResolvedModel, clients: Clients) -> str:
        """``model.tar.gz`` of the version's artifacts (as MLflow's own SageMaker deploy packs
        them: the model folder's contents at the archive's root) uploaded to S3."""
        options = info.options
        prefix = str(options["prefix"]).strip("/")
        key = "/".join(
            p
            for p in (prefix, info.name, f"v{model.version}-{secrets.token_hex(3)}", "model.tar.gz")
            if p
        )
        tmp = Path(tempfile.mkdtemp(prefix="steward-sagemaker-"))
        try:
            self._say(f"downloading {model.uri}")
            local = self._download(model, tmp / "model")
            archive = tmp / "model.tar.gz"
            with tarfile.open(archive, "w:gz") as tar:
                for entry in sorted(os.listdir(local)):
                    tar.add(local / entry, arcname=entry)
            uri = f"s3://{options['bucket']}/{key}"
            self._say(f"uploading model.tar.gz ({archive.stat().st_size} bytes) to {uri}")
            with aws(f"uploading the model archive to {uri}"):
                clients.s3.upload_file(str(archive), options["bucket"], key)
            return uri
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _capture_config(self, info: DeploymentInfo) -> dict[str, Any] | None:
        options = info.options
        if not options["data_capture"]:
            return None
        return {
            "EnableCapture": True,
            "InitialSamplingPercentage": int(options["capture_percent"]),
            "DestinationS3Uri": capture_destination(options),
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {
                "CsvContentTypes": ["text/csv"],
                "JsonContentTypes": ["application/json"],
            },
        }

    def _release(
        self, info: DeploymentInfo, model: ResolvedModel, clients: Clients
    ) -> dict[str, Any]:
        """S3 archive, SageMaker model and endpoint config for ``model``, each recorded as soon
        as AWS made it. On failure the ones made are deleted (or stay recorded if that fails)."""
        options = info.options
        release: dict[str, Any] = {"version": model.version, "variant": f"v{model.version}"}
        info.runtime.setdefault("releases", []).append(release)
        name = _resource_name(info.name, model.version)
        try:
            release["model_data"] = self._package(info, model, clients)
            self._save(info)
            self._say(f"creating SageMaker model {name}")
            call(
                f"creating SageMaker model {name}",
                lambda: clients.sagemaker.create_model(
                    ModelName=name,
                    ExecutionRoleArn=options["role_arn"],
                    PrimaryContainer={
                        "Image": options["image_uri"],
                        "ModelDataUrl": release["model_data"],
                        "Environment": {
                            "MLFLOW_DEPLOYMENT_FLAVOR_NAME": "python_function",
                            "SERVING_ENVIRONMENT": "SageMaker",
                        },
                    },
                    Tags=self._tags(info, model),
                ),
            )
            release["model"] = name
            self._save(info)
            variant = {
                "VariantName": release["variant"],
                "ModelName": name,
                "InitialInstanceCount": int(options["instance_count"]),
                "InstanceType": options["instance_type"],
                "InitialVariantWeight": 1.0,
            }
            extra: dict[str, Any] = {}
            capture = self._capture_config(info)
            if capture is not None:
                extra["DataCaptureConfig"] = capture
            self._say(f"creating endpoint config {name}")
            call(
                f"creating endpoint config {name}",
                lambda: clients.sagemaker.create_endpoint_config(
                    EndpointConfigName=name,
                    ProductionVariants=[variant],
                    Tags=self._tags(info, model),
                    **extra,
                ),
            )
            release["config"] = name
            self._save(info)
        except BaseException:
            self._discard(info, release, clients)
            raise
        return release

    def _tags(self, info: DeploymentInfo, model: ResolvedModel) -> list[dict[str, str]]:
        return [
            {"Key": "steward:deployment", "Value": info.name},
            {"Key": "steward:model", "Value": model.name},
            {"Key": "steward:version", "Value": model.version},
        ]

    def _discard(self, info: DeploymentInfo, release: dict[str, Any], clients: Clients) -> None:
        """Delete a release's resources; what cannot be deleted stays in the record."""
        left = _delete_release(release, clients, self._say)
        releases = info.runtime.get("releases", [])
        if left:
            release.clear()
            release.update(left)
        elif release in releases:
            releases.remove(release)
        self._save(info)

    def _follow(
        self, info: DeploymentInfo, clients: Clients, doing: str
    ) -> tuple[dict[str, Any], list[str]]:
        """Read the endpoint until it stops moving; returns its description and the statuses
        seen (in order, repeats collapsed). Progress: each status change."""
        poll = float(info.options["poll_interval"])
        deadline = time.monotonic() + float(info.options["timeout"])
        seen: list[str] = []
        while True:
            described = call(
                f"reading endpoint {info.name}",
                lambda: clients.sagemaker.describe_endpoint(EndpointName=info.name),
            )
            status = described["EndpointStatus"]
            if not seen or seen[-1] != status:
                seen.append(status)
                self._say(f"{doing}: endpoint {info.name} is {status}")
            if status not in _MOVING:
                return described, seen
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"{doing}: endpoint {info.name} is still {status} after "
                    f"{info.options['timeout']:.0f}s; steward stopped following it (the "
                    "resources are recorded: `get` shows where it is, `delete` removes them)"
                )
            time.sleep(poll)

    # -- steps ---------------------------------------------------------------------------------

    def create(
        self, info: DeploymentInfo, model: ResolvedModel, traffic: int | None
    ) -> DeploymentInfo:
        clients = Clients(info.options)
        info.runtime = {"endpoint": info.name, "releases": []}
        with aws("finding the AWS region"):
            info.runtime["region"] = clients.region
        info.runtime["pinned"] = {
            "region": info.runtime["region"],
            **{key: info.options[key] for key in PINNED if key != "region"},
        }
        self._save(info)
        release = self._release(info, model, clients)
        try:
            self._say(f"creating endpoint {info.name}")
            made = call(
                f"creating endpoint {info.name}",
                lambda: clients.sagemaker.create_endpoint(
                    EndpointName=info.name,
                    EndpointConfigName=release["config"],
                    Tags=self._tags(info, model),
                ),
            )
            info.runtime.update(endpoint_arn=made["EndpointArn"], config=release["config"])
            self._save(info)
            described, _ = self._follow(info, clients, "creating")
            if described["EndpointStatus"] != "InService":
                raise DeploymentError(
                    f"endpoint {info.name} is {described['EndpointStatus']}: "
                    f"{described.get('FailureReason') or 'SageMaker gave no reason'}; "
                    "check the image (image_uri), the role (role_arn) and the CloudWatch logs "
                    f"of /aws/sagemaker/Endpoints/{info.name}"
                )
        except BaseException:
            self._remove_endpoint(info, clients)
            self._discard(info, release, clients)
            raise
        return self._serving(info, model, release, clients)

    def _serving(
        self,
        info: DeploymentInfo,
        model: ResolvedModel,
        release: Mapping[str, Any],
        clients: Clients,
    ) -> DeploymentInfo:
        info.version = model.version
        info.status = "serving"
        info.reason = None
        info.traffic = {model.version: 100}
        info.endpoint = endpoint_uri(info.runtime.get("region", ""), info.name)
        info.runtime["config"] = release["config"]
        self._save(info)
        if info.requested != model.requested:
            # The host keeps the old URI after a canary (on-prem, a canary serves beside the old
            # version until promoted); SageMaker's canary ends with the new version serving all
            # traffic, so a later plain `update` must re-resolve the new URI, not the old one.
            info.requested = model.requested
            self.context.store.update_row(None, info.name, requested=model.requested)
        return info

    def _remove_endpoint(self, info: DeploymentInfo, clients: Clients) -> None:
        if "endpoint_arn" not in info.runtime:
            return
        try:
            clients.sagemaker.delete_endpoint(EndpointName=info.name)
        except Exception as exc:
            if not is_missing(exc):
                self._say(f"could not delete endpoint {info.name}: {explain(exc, 'deleting')}")
                return
        info.runtime.pop("endpoint_arn", None)
        info.runtime.pop("config", None)
        self._save(info)

    def _find_release(self, info: DeploymentInfo, version: str) -> dict[str, Any] | None:
        """The newest complete release of ``version`` whose endpoint config still exists."""
        for release in reversed(info.runtime.get("releases", [])):
            if release.get("version") == version and release.get("config"):
                return release
        return None

    def update(
        self, info: DeploymentInfo, model: ResolvedModel, traffic: int | None
    ) -> DeploymentInfo:
        if info.options["rollout"] == "manual":
            from mlflow_steward_aws.manual import manual_update

            return manual_update(self, info, model, traffic)
        if info.runtime.get("canary"):
            raise DeploymentError(
                f"deployment {info.name!r} has a manual canary running; promote or roll it back "
                "before a guardrails update"
            )
        config = deployment_config(info.options, traffic)
        clients = self._clients(info)
        current = info.runtime.get("config")
        release = self._find_release(info, model.version)
        if release is not None and self._config_changed(info, release, clients):
            release = None  # instances or capture changed: a new config
        if release is not None and release["config"] == current and traffic is None:
            # Same version, same config: nothing to shift.
            self._say(f"endpoint {info.name} already serves v{model.version} as configured")
            return self._serving(info, model, release, clients)
        if release is None:
            release = self._release(info, model, clients)
        self._error_rate_alarm(info, release, config, clients)
        return self._shift(info, model, release, config, clients, doing="updating")

    def _error_rate_alarm(
        self,
        info: DeploymentInfo,
        release: Mapping[str, Any],
        config: dict[str, Any],
        clients: Clients,
    ) -> None:
        """With ``error_rate_max``, the CloudWatch alarm steward keeps for the deployment: the
        new variant's 5xx share of invocations over ``error_rate_window``, watched by the
        update (added to ``AutoRollbackConfiguration``)."""
        limit = float(info.options["error_rate_max"])
        if limit <= 0:
            return
        name = error_rate_alarm_name(info.name)
        window = int(info.options["error_rate_window"])
        dimensions = [
            {"Name": "EndpointName", "Value": info.name},
            {"Name": "VariantName", "Value": release["variant"]},
        ]

        def metric(key: str, metric_name: str) -> dict[str, Any]:
            return {
                "Id": key,
                "ReturnData": False,
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SageMaker",
                        "MetricName": metric_name,
                        "Dimensions": dimensions,
                    },
                    "Period": window,
                    "Stat": "Sum",
                },
            }

        self._say(f"alarm {name}: 5xx share of v{release['version']} above {limit:.1%}")
        call(
            f"creating CloudWatch alarm {name}",
            lambda: clients.cloudwatch.put_metric_alarm(
                AlarmName=name,
                AlarmDescription=f"steward: error rate of deployment {info.name}",
                Metrics=[
                    metric("errors", "Invocation5XXErrors"),
                    metric("calls", "Invocations"),
                    {
                        "Id": "rate",
                        "Expression": "IF(calls > 0, errors / calls, 0)",
                        "Label": "5xx share",
                        "ReturnData": True,
                    },
                ],
                EvaluationPeriods=1,
                Threshold=limit,
                ComparisonOperator="GreaterThanThreshold",
                TreatMissingData="notBreaching",
            ),
        )
        info.runtime["alarms"] = [name]
        self._save(info)
        alarms = config.setdefault("AutoRollbackConfiguration", {"Alarms": []})["Alarms"]
        if {"AlarmName": name} not in alarms:
            alarms.append({"AlarmName": name})
        if len(alarms) > 10:
            raise DeploymentError(
                "alarms: with error_rate_max steward adds its own alarm; SageMaker watches at "
                "most 10 per update: name at most 9"
            )

    def _config_changed(
        self, info: DeploymentInfo, release: Mapping[str, Any], clients: Clients
    ) -> bool:
        """Whether a recorded config no longer matches the options (instances, capture) or is
        gone: then a new one is made."""
        try:
            described = clients.sagemaker.describe_endpoint_config(
                EndpointConfigName=release["config"]
            )
        except Exception as exc:
            if is_missing(exc):
                return True
            raise explain(exc, f"reading endpoint config {release['config']}") from exc
        variant = described["ProductionVariants"][0]
        options = info.options
        capture = described.get("DataCaptureConfig") or {}
        return (
            variant.get("InstanceType") != options["instance_type"]
            or int(variant.get("InitialInstanceCount", 0)) != int(options["instance_count"])
            or bool(capture.get("EnableCapture")) != bool(options["data_capture"])
        )

    def _shift(
        self,
        info: DeploymentInfo,
        model: ResolvedModel,
        release: dict[str, Any],
        config: dict[str, Any],
        clients: Clients,
        *,
        doing: str,
    ) -> DeploymentInfo:
        """``UpdateEndpoint`` to ``release``'s config under ``config`` (guardrails), followed to
        its end. A rollback by SageMaker (an alarm, a failed new fleet) raises, with the
        outcome recorded in ``runtime.last_update``."""
        old = info.runtime.get("config")
        self._say(f"{doing} endpoint {info.name} to v{model.version}: {describe(config)}")
        call(
            f"updating endpoint {info.name}",
            lambda: clients.sagemaker.update_endpoint(
                EndpointName=info.name,
                EndpointConfigName=release["config"],
                DeploymentConfig=config,
            ),
        )
        last: dict[str, Any] = {
            "config": release["config"],
            "from_config": old,
            "version": model.version,
            "deployment_config": config,
            "outcome": "updating",
        }
        info.runtime["last_update"] = last
        self._save(info)
        described, seen = self._follow(info, clients, doing)
        last["statuses"] = seen
        status = described["EndpointStatus"]
        serving = described.get("EndpointConfigName")
        reason = described.get("FailureReason")
        if status == "InService" and serving == release["config"]:
            last["outcome"] = "serving"
            info.runtime["previous_config"] = old
            return self._serving(info, model, release, clients)
        if status == "UpdateRollbackFailed":
            last["outcome"] = "update-rollback-failed"
            last["reason"] = reason
            self._save(info)
            raise DeploymentError(
                f"{doing} endpoint {info.name} failed and SageMaker could not roll it back "
                f"(UpdateRollbackFailed: {reason or 'no reason given'}); the endpoint may serve "
                f"either fleet: run `steward deploy rollback {info.name}` or fix it in the "
                "SageMaker console"
            )
        if status == "InService":
            last["outcome"] = "rolled-back"
            last["reason"] = reason
            self._save(info)
            why = reason or (
                "an alarm fired" if "RollingBack" in seen else "the new fleet did not take over"
            )
            raise DeploymentError(
                f"SageMaker rolled the update of {info.name} to v{model.version} back ({why}; "
                f"statuses {' -> '.join(seen)}); the endpoint still serves v{info.version} "
                f"({serving})"
            )
        last["outcome"] = "failed"
        last["reason"] = reason
        self._save(info)
        raise DeploymentError(
            f"{doing} endpoint {info.name}: it is {status} "
            f"({reason or 'SageMaker gave no reason'}); check the image, the role and the "
            f"CloudWatch logs of /aws/sagemaker/Endpoints/{info.name}"
        )

    def rollback(self, info: DeploymentInfo, model: ResolvedModel | None) -> DeploymentInfo:
        if info.options["rollout"] == "manual" or info.runtime.get("canary"):
            from mlflow_steward_aws.manual import manual_rollback

            return manual_rollback(self, info, model)
        if model is None:
            raise DeploymentError(
                f"deployment {info.name!r} has no canary of its own to drop (SageMaker's "
                "canaries finish or roll back by themselves)"
            )
        clients = self._clients(info)
        release = self._find_release(info, model.version)
        if release is None or self._config_changed(info, release, clients):
            release = self._release(info, model, clients)
        # Back at once: a rollback does not bake.
        # No alarms either: the version rolled back to must not be rolled back by them.
        config = deployment_config(
            {**info.options, "wait": 0, "linear_step": 0, "alarms": []}, None
        )
        return self._shift(info, model, release, config, clients, doing="rolling back")

    def promote_canary(self, info: DeploymentInfo) -> DeploymentInfo:
        from mlflow_steward_aws.manual import manual_promote

        return manual_promote(self, info)

    def delete(self, info: DeploymentInfo) -> None:
        clients = self._clients(info)
        self._say(f"deleting endpoint {info.name}")
        try:
            clients.sagemaker.delete_endpoint(EndpointName=info.name)
        except Exception as exc:
            if not is_missing(exc):
                raise explain(exc, f"deleting endpoint {info.name}") from exc
        info.runtime.pop("endpoint_arn", None)
        if info.runtime.get("alarms"):
            call(
                f"deleting CloudWatch alarms {info.runtime['alarms']}",
                lambda: clients.cloudwatch.delete_alarms(AlarmNames=info.runtime["alarms"]),
            )
            info.runtime.pop("alarms")
        left = []
        for release in info.runtime.get("releases", []):
            rest = _delete_release(dict(release), clients, self._say)
            if rest:
                left.append(rest)
        info.runtime["releases"] = left
        self._save(info)
        if left:
            raise DeploymentError(
                f"deployment {info.name}: could not delete {left}; they stay recorded, run "
                "`delete` again once the cause is fixed"
            )

    # -- reading -------------------------------------------------------------------------------

    def _describe(self, info: DeploymentInfo) -> dict[str, Any] | None:
        try:
            return dict(self._clients(info).sagemaker.describe_endpoint(EndpointName=info.name))
        except Exception as exc:
            if is_missing(exc):
                return None
            raise explain(exc, f"reading endpoint {info.name}") from exc

    def get(self, info: DeploymentInfo) -> DeploymentInfo:
        described = self._describe(info)
        if described is None:
            info.reason = info.reason or f"endpoint {info.name} does not exist on SageMaker"
            if info.status == "serving":
                info.status = "missing"
            return info
        info.runtime["endpoint_status"] = described["EndpointStatus"]
        info.runtime["serving_config"] = described.get("EndpointConfigName")
        if described["EndpointStatus"] == "Failed":
            info.status = "failed"
            info.reason = described.get("FailureReason")
        return info

    def health(self, info: DeploymentInfo) -> dict[str, Any]:
        try:
            described = self._describe(info)
        except DeploymentError as exc:
            return {"healthy": False, "detail": str(exc)}
        if described is None:
            return {"healthy": False, "detail": f"endpoint {info.name} does not exist"}
        status = described["EndpointStatus"]
        detail = f"endpoint {status}"
        if described.get("FailureReason"):
            detail += f": {described['FailureReason']}"
        return {"healthy": status == "InService", "detail": detail}

    def status(self, info: DeploymentInfo) -> dict[str, Any]:
        described = self._describe(info)
        if described is None:
            return {"health": {"healthy": False, "detail": f"endpoint {info.name} does not exist"}}
        by_variant = {r.get("variant"): r.get("version") for r in info.runtime.get("releases", [])}
        variants = described.get("ProductionVariants") or []
        total = sum(float(v.get("CurrentWeight", 0) or 0) for v in variants) or 1.0
        traffic = {
            str(by_variant.get(v["VariantName"], v["VariantName"])): round(
                100 * float(v.get("CurrentWeight", 0) or 0) / total
            )
            for v in variants
        }
        status = described["EndpointStatus"]
        return {
            "health": {
                "healthy": status == "InService",
                "detail": f"endpoint {status}"
                + (f": {described['FailureReason']}" if described.get("FailureReason") else ""),
            },
            "version": info.version,
            "traffic": traffic,
            "endpoint_status": status,
            "endpoint_config": described.get("EndpointConfigName"),
            "last_update": info.runtime.get("last_update"),
        }

    def predict(self, info: DeploymentInfo, inputs: Any) -> Any:
        import json

        import pandas as pd

        if isinstance(inputs, pd.DataFrame):
            body = json.dumps({"dataframe_split": json.loads(inputs.to_json(orient="split"))})
        else:
            body = json.dumps(inputs)
        clients = self._clients(info)
        answer = call(
            f"invoking endpoint {info.name}",
            lambda: clients.runtime.invoke_endpoint(
                EndpointName=info.name, ContentType="application/json", Body=body
            ),
        )
        text = answer["Body"].read()
        try:
            payload = json.loads(text)
        except ValueError:
            return pd.DataFrame({"predictions": [text.decode(errors="replace")]})
        if isinstance(payload, dict) and "predictions" in payload:
            payload = payload["predictions"]
        return pd.DataFrame(payload if isinstance(payload, list) else [payload])


def endpoint_uri(region: str, name: str) -> str:
    """Where to invoke the endpoint (the SageMaker runtime URL of its region)."""
    return f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{name}/invocations"


def error_rate_alarm_name(deployment: str) -> str:
    return f"steward-{deployment}-error-rate"


def capture_destination(options: Mapping[str, Any]) -> str:
    if options.get("capture_destination"):
        return str(options["capture_destination"]).rstrip("/")
    prefix = str(options["prefix"]).strip("/")
    return f"s3://{options['bucket']}/{prefix + '/' if prefix else ''}capture"


def _delete_release(release: Mapping[str, Any], clients: Clients, say: Any) -> dict[str, Any]:
    """Delete a release's endpoint config, model and archive (newest first); returns what is
    left (empty: all gone, or already gone)."""
    left: dict[str, Any] = {}
    steps = (
        (
            "config",
            "endpoint config",
            lambda n: clients.sagemaker.delete_endpoint_config(EndpointConfigName=n),
        ),
        ("model", "SageMaker model", lambda n: clients.sagemaker.delete_model(ModelName=n)),
        ("model_data", "model archive", lambda uri: _delete_object(clients, uri)),
    )
    for key, what, delete in steps:
        value = release.get(key)
        if not value:
            continue
        try:
            delete(value)
            say(f"deleted {what} {value}")
        except Exception as exc:
            if not is_missing(exc):
                say(f"could not delete {what} {value}: {explain(exc, 'deleting')}")
                left[key] = value
    if left:
        left.update(version=release.get("version"), variant=release.get("variant"))
    return left


def _delete_object(clients: Clients, uri: str) -> None:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    clients.s3.delete_object(Bucket=bucket, Key=key)
