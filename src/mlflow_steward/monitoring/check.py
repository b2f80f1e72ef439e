"""One monitoring check of a registered version: baseline against current data, the verdict
logged as an MLflow run (metrics, params, tags, verdict.json, an HTML report with plots), and the
version's ``steward.monitor.*`` tags set through governance as actor ``steward-monitor``."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_steward.errors import MonitoringError
from mlflow_steward.governance.facts import model_id_of
from mlflow_steward.monitoring import (
    LABEL,
    LAST_RUN_TAG,
    MONITOR_ACTOR,
    NOTES,
    PREDICTION,
    REQUEST_ID,
    STATUS_TAG,
)
from mlflow_steward.monitoring.baseline import load_baseline
from mlflow_steward.monitoring.data import read_current
from mlflow_steward.monitoring.verdict import Verdict, judge
from mlflow_steward.registry import inner_uri, parse_model_uri

if TYPE_CHECKING:
    from mlflow_steward.plugins.services import StewardServices

EXPERIMENT = "steward-monitoring"


@dataclass(frozen=True)
class CheckResult:
    model: str
    version: str
    verdict: Verdict
    run_id: str | None
    baseline_source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "run_id": self.run_id,
            "baseline": self.baseline_source,
            **self.verdict.to_dict(),
        }


def resolve(session: StewardServices, model_uri: str) -> tuple[str, str]:
    """(name, version) of a registered ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``."""
    from mlflow_steward.errors import RegistryURIError

    try:
        ref = parse_model_uri(model_uri)
    except RegistryURIError as exc:
        raise MonitoringError(str(exc)) from None
    if ref.name is None:  # not ref.registered
        raise MonitoringError(f"{model_uri!r}: monitor a registered version (models:/NAME@ALIAS)")
    return ref.name, session.version_of(ref)


def check(
    session: StewardServices, model_uri: str, data: str, *, log: bool = True, **settings: Any
) -> CheckResult:
    """Check ``model_uri`` on the data file(s) or request-log folder ``data``."""
    name, version = resolve(session, model_uri)
    return check_current(session, name, version, read_current(data, version), log=log, **settings)


def version_baseline(session: StewardServices, name: str, version: str) -> Any:
    """The baseline of ``name`` version ``version`` (:class:`~.baseline.Baseline`)."""
    from mlflow import MlflowClient

    mv = session.store.get_model_version(name, version)
    client = MlflowClient(session.tracking_uri, inner_uri(session.registry_uri))
    target = f"models:/{name}/{version}"
    return load_baseline(client, model_id_of(None, mv.source), mv.run_id, target)


def model_columns(baseline: Any) -> dict[str, str]:
    """The columns the model takes, by kind (numeric or categorical), from its baseline's table:
    what a data source is told to read (:attr:`SourceContext.columns`)."""
    from mlflow_steward.monitoring.verdict import column_kind

    data = baseline.data
    return {str(c): column_kind(data[c]) for c in data.columns if c not in (LABEL, PREDICTION)}


def check_current(
    session: StewardServices,
    name: str,
    version: str,
    current: Any,
    *,
    log: bool = True,
    labels: Any = None,
    performance_metric: str = "accuracy",
    max_performance_drop: float = 0.05,
    label_column: str = "label",
    baseline: Any = None,
    **settings: Any,
) -> CheckResult:
    """Judge ``current`` (a DataFrame, or a window to judge from sketches: a
    :class:`~.sketches.StreamingWindow` or a data source's :class:`~.sketches.SketchedWindow`)
    against the baseline of ``name`` version ``version`` (``baseline``: already loaded); with
    ``labels`` (request_id, label[, row]), also the realised performance of the served
    predictions: a drop of more than ``max_performance_drop`` makes the verdict ``degraded``
    (whether or not the inputs drifted: the drifted columns are still reported)."""
    from dataclasses import replace

    from mlflow import MlflowClient

    from mlflow_steward.monitoring.performance import realised
    from mlflow_steward.monitoring.sketches import SketchedWindow, StreamingWindow
    from mlflow_steward.monitoring.verdict import DEGRADED, DRIFT, HEALTHY

    client = MlflowClient(session.tracking_uri, inner_uri(session.registry_uri))
    if baseline is None:
        baseline = version_baseline(session, name, version)
    settings.setdefault("detectors", session.pm.hooks.detectors())
    if isinstance(current, StreamingWindow | SketchedWindow):
        verdict, reference, sample, rows = _judge_sketched(baseline, current, settings)
        if labels is not None:  # predictions and labels are joined row by row: no rows here
            note = "realised performance not judged: the window was judged from sketches"
            verdict = replace(verdict, quality=[*verdict.quality, note])
        run_id = (
            _log(session, client, name, version, verdict, reference, sample, rows) if log else None
        )
        return CheckResult(name, version, verdict, run_id, str(baseline.info.get("source")))
    served = current
    notes = list(getattr(current, "attrs", {}).get(NOTES, []))
    current = current.drop(columns=[REQUEST_ID], errors="ignore")
    reference = baseline.data.drop(columns=[LABEL], errors="ignore")
    if PREDICTION in reference and PREDICTION not in current:
        reference = reference.drop(columns=[PREDICTION])
    verdict = judge(reference, current, **settings)
    if notes:  # how the data was read (e.g. a request log in the slow 0.1.0 format)
        verdict = replace(verdict, quality=[*verdict.quality, *notes])
    if labels is not None and verdict.status in (HEALTHY, DRIFT):
        performance = realised(
            served,
            labels,
            baseline.data,
            metric=performance_metric,
            max_drop=max_performance_drop,
            min_samples=settings.get("min_samples", 100),
            label_column=label_column,
        )
        if isinstance(performance, str):
            verdict = replace(verdict, quality=[*verdict.quality, performance])
        else:
            verdict = replace(
                verdict,
                status=DEGRADED if performance.degraded else verdict.status,
                quality=[*verdict.quality, performance.describe()],
                performance=performance.to_dict(),
            )
    run_id = _log(session, client, name, version, verdict, reference, current) if log else None
    return CheckResult(name, version, verdict, run_id, str(baseline.info.get("source")))


def _stream(window: Any, columns: Any) -> Any:
    """A window bigger than the memory budget, streamed in chunks into per-column sketches of
    ``columns`` (the reference's, by kind): a SketchedWindow and its first chunk."""
    import itertools

    from mlflow_steward.monitoring import sketches

    chunks = iter(window.chunks())
    first = next(chunks, None)
    if first is None:
        raise MonitoringError("no request with a logged payload in the window")
    if PREDICTION not in first:
        columns = {c: kind for c, kind in columns.items() if c != PREDICTION}
    rows = 0

    def counted() -> Any:
        nonlocal rows
        for chunk in itertools.chain([first], chunks):
            rows += len(chunk)
            yield chunk

    seen = sketches.sketch_chunks(counted(), columns)
    note = (
        "judging the window exactly would take about "
        f"{window.estimated_bytes * sketches.EXACT_PATH_FACTOR / 2**20:,.0f} MiB (the window is "
        f"about {window.estimated_bytes / 2**20:,.0f} MiB), larger than the memory budget "
        f"({window.budget / 2**20:,.0f} MiB): streamed in chunks"
    )
    sketched = sketches.SketchedWindow(seen, rows, (note, *window.notes))
    return sketched, first.drop(columns=[REQUEST_ID], errors="ignore")


def _judge_sketched(baseline: Any, window: Any, settings: dict[str, Any]) -> Any:
    """A window judged from per-column sketches against the baseline's (its stored sketches of
    every training row, or sketched from its table): a streamed request-log window, or a data
    source's SketchedWindow. Returns (verdict, reference, a sample for the report, rows)."""
    from dataclasses import replace

    from mlflow_steward.monitoring import sketches

    reference = baseline.data.drop(columns=[LABEL], errors="ignore")
    stored = baseline.sketches
    if stored is not None:  # sketched from all the training rows when it was logged
        ref = sketches.loads(stored, f"{baseline.info.get('source')}/baseline.sketches.json")
        ref = {name: s for name, s in ref.items() if name in reference.columns}
    else:
        ref = sketches.sketch_reference(reference)
    if isinstance(window, sketches.StreamingWindow):
        window, sample = _stream(window, {name: s.kind for name, s in ref.items()})
    else:
        sample = sketches.sample_of(window.columns)
    if PREDICTION in ref and PREDICTION not in window.columns:
        ref.pop(PREDICTION)
        reference = reference.drop(columns=[PREDICTION])
    wanted = (
        "method",
        "thresholds",
        "min_samples",
        "drift_share",
        "weights",
        "detectors",
        "params",
    )
    verdict = sketches.judge_sketches(
        ref, window.columns, **{k: v for k, v in settings.items() if k in wanted}
    )
    verdict = replace(verdict, quality=[*window.notes, *verdict.quality])
    return verdict, reference, sample, window.rows


def _log(session, client, name, version, verdict, reference, current, rows=None) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    run = client.create_run(
        experiment_id,
        run_name=f"{name}-v{version}",
        tags={
            "steward.monitor.model": name,
            "steward.monitor.version": version,
            STATUS_TAG: verdict.status,
        },
    )
    run_id = run.info.run_id
    params = {
        "model": name,
        "version": version,
        "n_reference": len(reference),
        "n_current": len(current) if rows is None else rows,
        **{k: json.dumps(v) if isinstance(v, dict) else v for k, v in verdict.settings.items()},
    }
    for key, value in params.items():
        client.log_param(run_id, key, str(value)[:6000])
    client.log_metric(run_id, "drift_share", verdict.share)
    if verdict.performance:
        metric = verdict.performance["metric"]
        client.log_metric(run_id, f"realised_{metric}", verdict.performance["realised"])
        client.log_metric(run_id, f"baseline_{metric}", verdict.performance["reference"])
    client.log_metric(run_id, "drifted_columns", len(verdict.drifted))
    for f in verdict.columns:
        safe = "".join(c if c.isalnum() or c in "_-." else "_" for c in f.column)
        if f.statistic is not None:
            client.log_metric(run_id, f"{safe}.statistic", f.statistic)
        if f.p_value is not None:
            client.log_metric(run_id, f"{safe}.p_value", f.p_value)
        client.log_metric(run_id, f"{safe}.drifted", float(f.drifted))
    with tempfile.TemporaryDirectory() as tmp:
        from mlflow_steward.monitoring.report import write_report

        folder = Path(tmp) / "report"
        write_report(folder, f"{name} v{version}: {verdict.status}", verdict, reference, current)
        (folder / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=2, default=str))
        client.log_artifacts(run_id, str(folder), artifact_path="steward-monitor")
    client.set_terminated(run_id)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    session.store.set_steward_tag(name, version, STATUS_TAG, verdict.status, actor=MONITOR_ACTOR)
    session.store.set_steward_tag(
        name, version, LAST_RUN_TAG, f"{stamp} {run_id}", actor=MONITOR_ACTOR
    )
    return run_id
