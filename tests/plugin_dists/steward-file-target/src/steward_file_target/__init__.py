"""A deployment target shipped as its own distribution: "deploys" a version by copying its model
into a folder (as an edge device would pull it) and predicts by loading that copy.

It has no ``mlflow.deployments`` entry point of its own: MLflow's CLI reaches it through steward's
generic target, ``mlflow deployments ... -t steward:/file-drop``. Used by the test suite as a real,
pip-installed third-party plugin.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins import DeploymentTarget, Option, TargetClient


class FileDropClient(TargetClient):
    def _folder(self, info: Any) -> Path:
        return Path(info.options["dir"]) / info.name

    def _copy(self, info: Any, model: Any) -> Any:
        import mlflow.artifacts
        from mlflow import MlflowClient

        source = MlflowClient(
            self.context.tracking_uri, self.context.registry_uri
        ).get_model_version_download_uri(model.name, model.version)
        folder = self._folder(info)
        shutil.rmtree(folder, ignore_errors=True)
        self.context.progress(f"copying {model.uri} to {folder}")
        mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(folder), tracking_uri=self.context.tracking_uri
        )
        (folder / "VERSION").write_text(model.version)
        info.version, info.status, info.endpoint = model.version, "serving", folder.as_uri()
        info.traffic = {model.version: 100}
        return info

    def create(self, info, model, traffic):
        return self._copy(info, model)

    def update(self, info, model, traffic):
        return self._copy(info, model)

    def rollback(self, info, model):
        return self._copy(info, model)

    def delete(self, info):
        shutil.rmtree(self._folder(info), ignore_errors=True)

    def predict(self, info, inputs):
        import mlflow.pyfunc
        import pandas as pd

        folder = self._folder(info)
        (model_dir,) = [p.parent for p in folder.rglob("MLmodel")]
        return pd.DataFrame(mlflow.pyfunc.load_model(str(model_dir)).predict(inputs))

    def health(self, info):
        return {"healthy": (self._folder(info) / "VERSION").is_file()}


@hookimpl
def steward_deployment_targets() -> Iterator[DeploymentTarget]:
    yield DeploymentTarget(
        name="file-drop",
        kind="edge",
        client=FileDropClient,
        help="Copies the model into DIR/<name> for an edge device to pull.",
        options=(Option("dir", "str", "the drop folder"),),
    )
