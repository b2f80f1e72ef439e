"""Monitoring: a detector, an alerter, a rule action, a data source and a retrainer (hooks
``steward_detectors``, ``steward_alerters``, ``steward_monitor_actions``,
``steward_data_sources``, ``steward_retrain``).

Everything heavy (numpy, pandas, MLflow) is imported inside the functions steward calls, so
``steward --help`` and ``steward plugins`` stay fast with the plugin installed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins import (
    ActionContext,
    Alert,
    Alerter,
    DataSource,
    Detector,
    DetectorResult,
    MonitorAction,
    MonitoringError,
    Option,
    SourceContext,
)


def mean_shift(
    columns: Mapping[str, tuple[Any, Any]], params: Mapping[str, Any]
) -> dict[str, DetectorResult]:
    """How far each column's mean moved, in standard deviations of the reference."""
    results = {}
    for column, (reference, current) in columns.items():
        spread = float(reference.std()) or 1.0
        shift = abs(float(current.mean()) - float(reference.mean())) / spread
        results[column] = DetectorResult(
            shift, threshold=params["limit"], drifted=shift > params["limit"]
        )
    return results


def send_to_file(alert: Alert, settings: Mapping[str, Any]) -> None:
    """Append the alert as one JSON line (a stand-in for the team's pager)."""
    with open(settings["path"], "a", encoding="utf-8") as out:
        out.write(json.dumps(alert.to_dict(), sort_keys=True) + "\n")


def request_review(context: ActionContext, params: Mapping[str, Any]) -> str:
    """Tag the monitored version so that a person looks at it (through governance)."""
    what = f"tag v{context.version} {params['key']}={params['value']}"
    if context.dry_run:
        return f"would {what}"
    if context.version is None:
        return "nothing to tag: the monitored version is not known"
    from mlflow.entities.model_registry import ModelVersionTag

    # Rule actions act as steward-monitor: policies decide on this write and it is audited.
    context.session.store.set_model_version_tag(
        context.model, context.version, ModelVersionTag(params["key"], params["value"])
    )
    return what.replace("tag", "tagged", 1)


def read_csv_folder(spec: Any, context: SourceContext) -> Any:
    """Every ``*.csv`` in the folder ``spec``, newer than ``context.since`` when given."""
    import pandas as pd

    folder = Path(str(spec)).expanduser()
    if not folder.is_dir():
        raise MonitoringError(f"csv-folder: {folder} is not a folder")
    files = sorted(
        f
        for f in folder.glob("*.csv")
        if context.since is None or f.stat().st_mtime > context.since
    )
    if not files:
        raise MonitoringError(f"csv-folder: no *.csv files in {folder}")
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


@hookimpl
def steward_detectors() -> Iterator[Detector]:
    yield Detector(
        name="mean-shift",
        kinds=("numeric",),
        measure=mean_shift,
        help="how far the mean moved, in reference standard deviations",
        options=(Option("limit", "number", "largest shift that is not drift", 0.5),),
    )


@hookimpl
def steward_alerters() -> Iterator[Alerter]:
    yield Alerter(
        name="jsonl-file",
        send=send_to_file,
        help="append each alert as a JSON line to a file",
        options=(Option("path", "str", "the file to append to"),),
    )


@hookimpl
def steward_monitor_actions() -> Iterator[MonitorAction]:
    yield MonitorAction(
        name="request-review",
        run=request_review,
        help="tag the monitored version for a person to review",
        options=(
            Option("key", "str", "the tag's key", "review"),
            Option("value", "str", "the tag's value", "needed"),
        ),
    )


@hookimpl
def steward_data_sources() -> Iterator[DataSource]:
    yield DataSource(name="csv-folder", read=read_csv_folder, help="every *.csv file in a folder")


@hookimpl
def steward_retrain(context: ActionContext, params: Mapping[str, Any]) -> str | None:
    """Queue a retraining job: a line in the file ``STEWARD_TEAM_RETRAIN_QUEUE`` names it.

    Return ``None`` (no queue configured) to leave retraining to the next plugin and finally to
    steward's own (the producing run's MLflow project, re-run from its git commit).
    """
    queue = os.environ.get("STEWARD_TEAM_RETRAIN_QUEUE")
    if not queue:
        return None
    job = {"model": context.model, "version": context.version, "status": context.status}
    with open(queue, "a", encoding="utf-8") as out:
        out.write(json.dumps(job, sort_keys=True) + "\n")
    return f"queued retraining of {context.model} v{context.version}"
