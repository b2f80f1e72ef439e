"""The retrain action when a ``steward_retrain`` plugin is installed but declines (returns
``None``) and the version's run was not started from a git project: the answer is that the run
has no project source, not a ``TypeError`` from running git with no repository."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from mlflow import MlflowClient

from mlflow_steward.errors import MonitoringError
from mlflow_steward.monitoring.retrain import retrain
from mlflow_steward.plugins.types import ActionContext


class _DecliningRetrainer:
    def retrain(self, *, context: Any, params: Any) -> None:
        return None  # e.g. the template's retrainer without a queue configured


class _Session:
    """What retrain uses of a session; every governed write is allowed."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.tracking_uri = tracking_uri
        self.store = SimpleNamespace(get_model_version=lambda name, version: _Version(run_id))
        self.pm = SimpleNamespace(hooks=_DecliningRetrainer())
        self.governed_events: list[Any] = []

    def has_retrainer(self) -> bool:
        return True

    def version_event(self, action: str, model: str, version: str, context: Any) -> Any:
        return (action, model, version)

    def governed(self, event: Any, write: Any) -> Any:
        self.governed_events.append(event)
        return write()


class _Version:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id


def test_a_declining_retrainer_leaves_the_missing_project_source_as_the_answer(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("not-a-project"))  # no git tags
    session = _Session(uri, run.info.run_id)
    context = ActionContext(
        monitor=SimpleNamespace(name="fraud", model="models:/fraud/1", rules=()),
        model="fraud",
        version="1",
        status="drift",
        drifted=(),
        share=0.0,
        run_id=None,
        session=session,
        dry_run=False,
        alerters={},
        channels={},
    )
    with pytest.raises(MonitoringError, match="was not started from a git project"):
        retrain(context, {})
    assert session.governed_events == [("retrain", "fraud", "1")]  # decided before declining
