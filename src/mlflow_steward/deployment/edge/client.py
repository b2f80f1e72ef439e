"""The ``steward-edge`` target's client: a deployment is a model published to one channel.

Before governance decides a step, the host lets the client :meth:`~EdgeClient.prepare` it: the
client builds the bundle (or takes the one the channel holds for that version) and measures it,
and policies (``deploy``, kind ``edge``) decide with its size and ONNX facts; on allow the
client publishes that same file.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow_steward.deployment.edge.bundle import check_model_name
from mlflow_steward.deployment.edge.channel import Channel
from mlflow_steward.deployment.edge.facts import measure
from mlflow_steward.deployment.edge.governed import stage
from mlflow_steward.errors import DeploymentError
from mlflow_steward.plugins.targets import DeploymentInfo, ResolvedModel, TargetClient


class EdgeClient(TargetClient):
    def __init__(self, target: Any, context: Any) -> None:
        super().__init__(target, context)
        #: The bundle :meth:`prepare` made for each model URI, while its step runs.
        self._prepared: dict[str, Path] = {}

    def _channel(self, options: Mapping[str, Any]) -> Channel:
        return Channel(str(options["channel"]), options.get("keys") or None)

    def validate(self, name: str, options: Mapping[str, Any]) -> None:
        channel = self._channel(options)
        root = channel.root()  # "not a channel" otherwise
        for role in ("targets", "snapshot", "timestamp"):
            channel._signers(root, role)

    @contextlib.contextmanager
    def prepare(
        self, operation: str, info: DeploymentInfo, model: ResolvedModel
    ) -> Iterator[Mapping[str, Any]]:
        """The bundle the step publishes, in a folder of its own: the one the channel holds for
        the version (a version's bundle never changes), else a new build (with an ONNX model
        when the deployment's ``onnx`` option is set). Yields its measured facts
        (:func:`.facts.measure`), which policies decide on."""
        check_model_name(model.name)
        tolerance = float(info.options["parity_tolerance"])
        with tempfile.TemporaryDirectory(prefix="steward-edge-") as tmp:
            path = stage(
                self._channel(info.options),
                model.name,
                model.version,
                model.requested,
                Path(tmp, "bundle.tar.gz"),
                tracking_uri=self.context.tracking_uri,
                registry_uri=self.context.registry_uri,
                progress=self.context.progress,
                onnx=bool(info.options["onnx"]),
                parity_tolerance=tolerance,
            )
            _, facts = measure(
                path,
                tracking_uri=self.context.tracking_uri,
                registry_uri=self.context.registry_uri,
                parity_tolerance=tolerance,
                progress=self.context.progress,
                expect=(model.name, model.version),
            )
            self._prepared[model.uri] = path
            try:
                yield facts
            finally:
                del self._prepared[model.uri]

    def _publish(self, info: DeploymentInfo, model: ResolvedModel) -> DeploymentInfo:
        path = self._prepared.get(model.uri)
        if path is None:
            raise DeploymentError(
                f"{model.uri}: no bundle was prepared (the deployment host prepares it before "
                "governance decides the step)"
            )
        channel = self._channel(info.options)
        release = channel.publish(path)
        self.context.progress(f"published {model.uri} as release {release.release}")
        info.version = model.version
        info.status = "serving"  # what the devices following the channel install
        info.endpoint = channel.location
        info.traffic = {model.version: 100}
        info.runtime = {"release": release.release, "target_path": release.path}
        info.reason = None
        return info

    def create(
        self, info: DeploymentInfo, model: ResolvedModel, traffic: int | None
    ) -> DeploymentInfo:
        return self._publish(info, model)

    def update(
        self, info: DeploymentInfo, model: ResolvedModel, traffic: int | None
    ) -> DeploymentInfo:
        if traffic is not None and traffic < 100:
            raise DeploymentError(
                "steward-edge publishes to every device of a channel: --traffic is not supported"
            )
        return self._publish(info, model)

    def rollback(self, info: DeploymentInfo, model: ResolvedModel | None) -> DeploymentInfo:
        if model is None:
            raise DeploymentError(f"deployment {info.name!r} has no canary to undo")
        return self._publish(info, model)

    def delete(self, info: DeploymentInfo) -> None:
        """Nothing to stop here: devices keep the release they installed."""

    def predict(self, info: DeploymentInfo, inputs: Any) -> Any:
        raise DeploymentError(
            f"deployment {info.name!r} runs on edge devices: send predictions to a device "
            "agent's /invocations"
        )

    def health(self, info: DeploymentInfo) -> dict[str, Any]:
        """The channel as devices see it: readable, and its timestamp not expired."""
        try:
            timestamp, _, _ = self._channel(info.options).current()
        except Exception as exc:  # never raises: health reports
            return {"healthy": False, "detail": f"channel unreadable: {exc}"}
        expires = timestamp.signed.expires
        if expires <= datetime.now(UTC):
            return {
                "healthy": False,
                "detail": f"the channel's timestamp expired at {expires}: devices refuse it "
                "until `steward edge channel refresh`",
            }
        return {"healthy": True, "detail": f"timestamp valid until {expires}"}

    def status(self, info: DeploymentInfo) -> dict[str, Any]:
        out: dict[str, Any] = {"health": self.health(info), "version": info.version}
        try:
            releases = self._channel(info.options).releases()
        except Exception:  # health says why
            return out
        if releases:
            out["release"] = releases[-1].to_dict()
        return out
