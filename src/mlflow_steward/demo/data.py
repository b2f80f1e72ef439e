"""Where the demo runs (:class:`Workspace`: the folder, its registry and its environment) and what
it trains on (:class:`DemoData`: scikit-learn's breast cancer data set, split once)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from mlflow_steward.env import ACTOR_ENV, CONFIG_ENV, HOME_ENV

if TYPE_CHECKING:
    import pandas as pd

    from mlflow_steward.lifecycle.session import StewardSession

CONFIG = """\
# steward.yaml written by `steward quickstart`
policies:
  - use: require-signature
  - use: required-tags
    when: {action: set_alias, alias: production}
    with: {tags: [owner]}
  - use: metric-threshold
    when: {action: set_alias, alias: production}
    with: {metric: accuracy, min: 0.8}
"""

#: Who acts in the demo, unless ``MLFLOW_STEWARD_ACTOR`` names someone.
ACTOR = "quickstart-user"
EXPERIMENT = "steward-quickstart"
MODEL_NAME = "breast-cancer"


class Estimator(Protocol):
    """What the demo needs of a scikit-learn model."""

    def fit(self, X: pd.DataFrame, y: pd.Series) -> object: ...

    def predict(self, X: pd.DataFrame) -> object: ...

    def score(self, X: pd.DataFrame, y: pd.Series) -> float: ...


Model = TypeVar("Model", bound=Estimator)


@dataclass(frozen=True)
class Workspace:
    """The demo's folder: an embedded registry (SQLite + local artifacts) and its steward.yaml."""

    root: Path

    @classmethod
    def create(cls, folder: str, *, keep: bool) -> Workspace:
        """The folder, emptied first unless ``keep``, with the demo's steward.yaml."""
        root = Path(folder).resolve()
        if root.exists() and not keep:
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        workspace = cls(root)
        workspace.config_path.write_text(CONFIG)
        return workspace

    @property
    def config_path(self) -> Path:
        return self.root / "steward.yaml"

    @property
    def db_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def registry_uri(self) -> str:
        return f"steward+{self.db_uri}"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @contextmanager
    def environment(self) -> Iterator[None]:
        """Steward's variables set for the demo, the previous values restored afterwards.

        The governed store MLflow builds from the registry URI finds steward.yaml through
        ``MLFLOW_STEWARD_CONFIG``, and the deployment's processes inherit the environment.
        """
        values = {
            CONFIG_ENV: str(self.config_path),
            ACTOR_ENV: os.environ.get(ACTOR_ENV, ACTOR),
            HOME_ENV: str(self.home),
        }
        previous = {key: os.environ.get(key) for key in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def connect(self) -> None:
        """Points MLflow's tracking at the registry and its model registry at the governed one."""
        import mlflow

        mlflow.set_tracking_uri(self.db_uri)
        mlflow.set_registry_uri(self.registry_uri)

    def open_experiment(self) -> None:
        """Connects, and makes the demo's experiment (artifacts in the folder) the active one."""
        import mlflow

        self.connect()
        if mlflow.get_experiment_by_name(EXPERIMENT) is None:
            mlflow.create_experiment(EXPERIMENT, artifact_location=self.artifacts.as_uri())
        mlflow.set_experiment(EXPERIMENT)

    def session(self) -> StewardSession:
        from mlflow_steward.lifecycle.session import StewardSession

        return StewardSession(registry_uri=self.registry_uri, tracking_uri=self.db_uri)


@dataclass(frozen=True)
class DemoData:
    """The training and test split, the registered model's name and the workspace."""

    workspace: Workspace
    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    name: str = MODEL_NAME

    @classmethod
    def load(cls, workspace: Workspace) -> DemoData:
        from sklearn.datasets import load_breast_cancer
        from sklearn.model_selection import train_test_split

        X, y = load_breast_cancer(return_X_y=True, as_frame=True)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
        return cls(workspace, X_train, X_test, y_train, y_test)

    def fit(self, model: Model) -> Model:
        """``model`` fitted on the training split."""
        model.fit(self.X_train, self.y_train)
        return model
