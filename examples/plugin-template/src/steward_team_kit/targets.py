"""A deployment target, ``team-shelf`` (hook ``steward_deployment_targets``).

It "deploys" a version by copying its model into ``<root>/<deployment name>/v<version>`` (a shelf
a batch-scoring job or an edge device reads from) and predicts by loading the copy in-process.
The host has already resolved the model, checked the options against ``options``, asked
governance and recorded the decision when a method is called; the client does the physical work
and returns the deployment's new state.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins import (
    DeploymentError,
    DeploymentInfo,
    DeploymentTarget,
    Option,
    ResolvedModel,
    TargetClient,
)


class ShelfClient(TargetClient):
    def _folder(self, info: DeploymentInfo) -> Path:
        return Path(info.options["root"]).expanduser() / info.name

    def _place(self, info: DeploymentInfo, model: ResolvedModel) -> DeploymentInfo:
        import mlflow.artifacts
        from mlflow import MlflowClient

        source = MlflowClient(
            self.context.tracking_uri, self.context.registry_uri
        ).get_model_version_download_uri(model.name, model.version)
        shelf = self._folder(info) / f"v{model.version}"
        if not shelf.is_dir():
            self.context.progress(f"copying {model.uri} to {shelf}")
            mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=str(shelf), tracking_uri=self.context.tracking_uri
            )
        kept = sorted(self._folder(info).glob("v*"), key=lambda p: p.stat().st_mtime)
        for old in kept[: -info.options["keep"]]:
            if old != shelf:
                shutil.rmtree(old, ignore_errors=True)
        (self._folder(info) / "CURRENT").write_text(model.version)
        info.version, info.status, info.endpoint = model.version, "serving", shelf.as_uri()
        info.traffic = {model.version: 100}
        return info

    def create(
        self, info: DeploymentInfo, model: ResolvedModel, traffic: int | None
    ) -> DeploymentInfo:
        if traffic not in (None, 100):
            raise DeploymentError("team-shelf serves one version: it has no canary traffic")
        return self._place(info, model)

    def update(
        self, info: DeploymentInfo, model: ResolvedModel, traffic: int | None
    ) -> DeploymentInfo:
        return self.create(info, model, traffic)

    def rollback(self, info: DeploymentInfo, model: ResolvedModel | None) -> DeploymentInfo:
        if model is None:
            raise DeploymentError("team-shelf has no canary to undo")
        return self._place(info, model)

    def delete(self, info: DeploymentInfo) -> None:
        shutil.rmtree(self._folder(info), ignore_errors=True)

    def predict(self, info: DeploymentInfo, inputs: Any) -> Any:
        import mlflow.pyfunc
        import pandas as pd

        shelf = self._folder(info) / f"v{info.version}"
        found = [p.parent for p in shelf.rglob("MLmodel")]
        if not found:
            raise DeploymentError(f"team-shelf: no model on the shelf at {shelf}")
        return pd.DataFrame(mlflow.pyfunc.load_model(str(found[0])).predict(inputs))

    def health(self, info: DeploymentInfo) -> dict[str, Any]:
        current = self._folder(info) / "CURRENT"
        if not current.is_file():
            return {"healthy": False, "reason": f"nothing on the shelf at {current.parent}"}
        return {"healthy": current.read_text() == info.version, "shelf": str(current.parent)}

    def status(self, info: DeploymentInfo) -> dict[str, Any]:
        shelved = sorted(p.name for p in self._folder(info).glob("v*"))
        return {"health": self.health(info), "version": info.version, "shelved": shelved}


@hookimpl
def steward_deployment_targets() -> Iterator[DeploymentTarget]:
    yield DeploymentTarget(
        name="team-shelf",
        kind="onprem",
        client=ShelfClient,
        help="Copies the model to <root>/<name>/v<version> for batch jobs to read.",
        options=(
            Option("root", "str", "the shelf's folder"),
            Option("keep", "int", "versions kept on the shelf", 2),
        ),
    )
