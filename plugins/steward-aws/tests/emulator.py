"""moto's threaded server on 127.0.0.1 (S3, SageMaker, CloudWatch over HTTP), with the SageMaker
calls moto 5 lacks added in test code only.

moto 5 has no ``UpdateEndpoint``, ignores ``DeploymentConfig`` and never evaluates alarms from
metrics (only ``set_alarm_state`` moves them). :class:`Emulator` adds ``UpdateEndpoint`` to the
server's SageMaker responses (the server runs in this process, in a thread, so a method added to
moto's ``SageMakerResponse`` class answers the HTTP calls boto3 makes). What it does, exactly
(docs/sagemaker.md repeats it):

1. Checks like SageMaker: the endpoint and the endpoint config exist, the endpoint is InService
   (else ``ValidationException``). Records ``(endpoint, config, DeploymentConfig)`` in
   :attr:`Emulator.updates` and on the endpoint as ``LastDeploymentConfig``; the endpoint turns
   ``Updating`` before the call returns.
2. In a thread, "bakes": one period of ``WaitIntervalInSeconds`` for ALL_AT_ONCE and CANARY, one
   per step for LINEAR (``ceil(100 / step)``), then ``TerminationWaitInSeconds``; real seconds
   (the tests use 0-2 s). No traffic is shifted (moto serves no model): the shift steps are
   recorded in :attr:`Emulator.steps`.
3. Every 50 ms of a period it reads the state of the ``AutoRollbackConfiguration`` alarms in
   moto's CloudWatch backend; one in ``ALARM`` (put there by the test with ``set_alarm_state``)
   turns the endpoint ``RollingBack`` for 0.3 s, then back ``InService`` on the old config
   (or ``UpdateRollbackFailed`` with a ``FailureReason`` when :attr:`Emulator.fail_rollback`).
   No alarm: the endpoint ends ``InService`` on the new config, with its variants and capture.

Besides, :attr:`Emulator.fail_next_endpoint` (a reason) makes the next ``CreateEndpoint`` end
``Failed`` with that ``FailureReason`` (moto makes every endpoint InService at once), and
:attr:`Emulator.throttle_endpoint_configs` (a count) makes that many ``CreateEndpointConfig``
calls answer HTTP 400 ``ThrottlingException`` before moto's own handler runs.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Emulator:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.updates: list[dict[str, Any]] = []
        self.steps: list[str] = []
        self.fail_rollback = False
        self.fail_next_endpoint: str | None = None
        #: The next this many ``CreateEndpointConfig`` calls answer ``ThrottlingException``.
        self.throttle_endpoint_configs = 0
        self._threads: list[threading.Thread] = []
        self._saved: dict[str, Any] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Emulator:
        from moto.sagemaker.responses import SageMakerResponse

        emulator = self
        self._saved = {
            "update_endpoint": SageMakerResponse.__dict__.get("update_endpoint"),
            "create_endpoint": SageMakerResponse.__dict__["create_endpoint"],
            "create_endpoint_config": SageMakerResponse.__dict__["create_endpoint_config"],
        }
        original_create = self._saved["create_endpoint"]
        original_config = self._saved["create_endpoint_config"]

        def create_endpoint_config(response: Any) -> Any:
            from moto.core.exceptions import JsonRESTError

            if emulator.throttle_endpoint_configs > 0:
                emulator.throttle_endpoint_configs -= 1
                raise JsonRESTError("ThrottlingException", "Rate exceeded")
            return original_config(response)

        def update_endpoint(response: Any) -> Any:
            return emulator._update_endpoint(response)

        def create_endpoint(response: Any) -> Any:
            result = original_create(response)
            reason, emulator.fail_next_endpoint = emulator.fail_next_endpoint, None
            if reason:
                endpoint = response.sagemaker_backend.endpoints[response._get_param("EndpointName")]
                endpoint.endpoint_status = "Failed"
                endpoint.failure_reason = reason
            return result

        SageMakerResponse.update_endpoint = update_endpoint  # type: ignore[attr-defined]
        SageMakerResponse.create_endpoint = create_endpoint  # type: ignore[method-assign]
        SageMakerResponse.create_endpoint_config = create_endpoint_config  # type: ignore[method-assign]
        self.server.start()
        return self

    def stop(self) -> None:
        from moto.sagemaker.responses import SageMakerResponse

        for thread in self._threads:
            thread.join(timeout=30)
        self.server.stop()
        if self._saved.get("update_endpoint") is None:
            del SageMakerResponse.update_endpoint  # type: ignore[attr-defined]
        else:
            SageMakerResponse.update_endpoint = self._saved["update_endpoint"]  # type: ignore[attr-defined]
        SageMakerResponse.create_endpoint = self._saved["create_endpoint"]  # type: ignore[method-assign]
        SageMakerResponse.create_endpoint_config = self._saved["create_endpoint_config"]  # type: ignore[method-assign]

    def wait_idle(self) -> None:
        for thread in self._threads:
            thread.join(timeout=30)

    # -- backends ----------------------------------------------------------------------------

    @staticmethod
    def sagemaker_backend() -> Any:
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends[ACCOUNT][REGION]

    @staticmethod
    def cloudwatch_backend() -> Any:
        from moto.cloudwatch.models import cloudwatch_backends

        return cloudwatch_backends[ACCOUNT][REGION]

    # -- the added call ----------------------------------------------------------------------

    def _update_endpoint(self, response: Any) -> Any:
        from moto.core.responses import ActionResult
        from moto.sagemaker.exceptions import ValidationError

        backend = response.sagemaker_backend
        name = response._get_param("EndpointName")
        config_name = response._get_param("EndpointConfigName")
        deployment = response._get_param("DeploymentConfig") or {}
        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            raise ValidationError(message=f"Could not find endpoint '{name}'.")
        config = backend.endpoint_configs.get(config_name)
        if config is None:
            raise ValidationError(message=f"Could not find endpoint configuration '{config_name}'.")
        if endpoint.endpoint_status != "InService":
            raise ValidationError(message=f"Cannot update in-progress endpoint '{endpoint.arn}'.")
        self.updates.append({"endpoint": name, "config": config_name, "deployment": deployment})
        endpoint.last_deployment_config = deployment
        endpoint.endpoint_status = "Updating"
        endpoint.failure_reason = None
        thread = threading.Thread(
            target=self._bake, args=(endpoint, config, deployment), daemon=True
        )
        self._threads.append(thread)
        thread.start()
        return ActionResult({"EndpointArn": endpoint.arn})

    def _periods(self, deployment: dict[str, Any]) -> list[tuple[str, float]]:
        policy = deployment.get("BlueGreenUpdatePolicy") or {}
        routing = policy.get("TrafficRoutingConfiguration") or {"Type": "ALL_AT_ONCE"}
        wait = float(routing.get("WaitIntervalInSeconds", 0))
        kind = routing.get("Type", "ALL_AT_ONCE")
        if kind == "CANARY":
            periods = [(f"canary {routing['CanarySize']['Value']}%", wait), ("all", 0.0)]
        elif kind == "LINEAR":
            step = float(routing["LinearStepSize"]["Value"])
            n = math.ceil(100 / step)
            periods = [(f"linear {min(100, round(step * (i + 1)))}%", wait) for i in range(n)]
        else:
            periods = [("all", wait)]
        return [*periods, ("termination wait", float(policy.get("TerminationWaitInSeconds", 0)))]

    def _alarm_firing(self, deployment: dict[str, Any]) -> str | None:
        names = [
            a["AlarmName"]
            for a in (deployment.get("AutoRollbackConfiguration") or {}).get("Alarms", [])
        ]
        alarms = self.cloudwatch_backend().alarms
        for name in names:
            alarm = alarms.get(name)
            if alarm is not None and alarm.state_value == "ALARM":
                return name
        return None

    def _bake(self, endpoint: Any, config: Any, deployment: dict[str, Any]) -> None:
        for label, seconds in self._periods(deployment):
            self.steps.append(f"{endpoint.endpoint_name}: {label}")
            end = time.monotonic() + seconds
            while True:
                fired = self._alarm_firing(deployment)
                if fired is not None:
                    self.steps.append(f"{endpoint.endpoint_name}: alarm {fired}, rolling back")
                    endpoint.endpoint_status = "RollingBack"
                    time.sleep(0.3)
                    if self.fail_rollback:
                        endpoint.endpoint_status = "UpdateRollbackFailed"
                        endpoint.failure_reason = (
                            f"Alarm {fired} fired and the rollback to the previous fleet failed"
                        )
                    else:
                        endpoint.endpoint_status = "InService"
                    return
                if time.monotonic() >= end:
                    break
                time.sleep(0.05)
        endpoint.endpoint_config_name = config.endpoint_config_name
        endpoint.production_variants = endpoint._process_production_variants(
            config.production_variants
        )
        endpoint.data_capture_config = config.data_capture_config
        endpoint.endpoint_status = "InService"
        self.steps.append(f"{endpoint.endpoint_name}: done")
