"""The chain of one registered version: data -> run -> logged model -> version -> decisions,
approvals, deployments, monitoring.

:func:`lineage` returns plain JSON data. A part that does not exist (no dataset logged, never
deployed) is an empty list or ``None`` and is named in ``absent``; a part the record source cannot
provide (a server exposes no audit log) is named in ``unavailable``. Neither is an error.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from mlflow_steward.errors import LifecycleError

#: Run tags MLflow sets for the code a run came from.
GIT_COMMIT = "mlflow.source.git.commit"
GIT_REPO = "mlflow.source.git.repoURL"
ENTRY_POINT = "mlflow.project.entryPoint"
SOURCE_NAME = "mlflow.source.name"
USER = "mlflow.user"

#: The MLflow experiment monitoring runs are logged to (``monitoring/check.py``).
MONITOR_EXPERIMENT = "steward-monitoring"

#: Every section of a lineage, in the order it is shown.
SECTIONS = (
    "datasets",
    "run",
    "logged_model",
    "version_info",
    "decisions",
    "moves",
    "approvals",
    "deployments",
    "monitoring",
    "evidence",
)


def _ms(value: int | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1000, UTC).isoformat(timespec="seconds")


def _datasets(run: Any) -> list[dict[str, Any]]:
    out = []
    for dataset_input in getattr(run.inputs, "dataset_inputs", None) or []:
        dataset = dataset_input.dataset
        try:
            source: Any = json.loads(dataset.source)
        except (TypeError, ValueError):
            source = dataset.source
        out.append(
            {
                "name": dataset.name,
                "digest": dataset.digest,
                "source_type": dataset.source_type,
                "source": source,
                "context": next(
                    (t.value for t in dataset_input.tags if t.key == "mlflow.data.context"), None
                ),
                "schema": _json_or_none(getattr(dataset, "schema", None)),
                "profile": _json_or_none(getattr(dataset, "profile", None)),
            }
        )
    return out


def _json_or_none(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _run(run: Any) -> dict[str, Any]:
    tags = dict(run.data.tags)
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "experiment_id": run.info.experiment_id,
        "status": run.info.status,
        "start_time": _ms(run.info.start_time),
        "end_time": _ms(run.info.end_time),
        "author": tags.get(USER) or run.info.user_id or None,
        "git_commit": tags.get(GIT_COMMIT),
        "git_repo": tags.get(GIT_REPO),
        "entry_point": tags.get(ENTRY_POINT),
        "source_name": tags.get(SOURCE_NAME),
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
    }


def _logged_model(logged: Any) -> dict[str, Any]:
    return {
        "model_id": logged.model_id,
        "name": logged.name,
        "artifact_location": logged.artifact_location,
        "source_run_id": logged.source_run_id,
        "created": _ms(logged.creation_timestamp),
        "tags": dict(logged.tags or {}),
        "metrics": {m.key: m.value for m in (logged.metrics or [])},
    }


def _monitoring(client: Any, name: str, version: str) -> list[dict[str, Any]]:
    experiment = client.get_experiment_by_name(MONITOR_EXPERIMENT)
    if experiment is None:
        return []
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=(
            f"tags.`steward.monitor.model` = '{_quote(name)}' "
            f"AND tags.`steward.monitor.version` = '{version}'"
        ),
        order_by=["attributes.start_time ASC"],
        max_results=1000,
    )
    host = client.tracking_uri if str(client.tracking_uri).startswith("http") else None
    out = []
    for run in runs:
        path = f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        out.append(
            {
                "run_id": run.info.run_id,
                "time": _ms(run.info.start_time),
                "status": run.data.tags.get("steward.monitor.status"),
                "drift_share": run.data.metrics.get("drift_share"),
                "drifted_columns": run.data.metrics.get("drifted_columns"),
                "run_uri": f"runs:/{run.info.run_id}",
                "link": f"{host.rstrip('/')}/{path}" if host else path,
                "report": f"runs:/{run.info.run_id}/steward-monitor/report.html",
            }
        )
    return out


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _deployments(rows: list[dict[str, Any]], name: str, version: str) -> list[dict[str, Any]]:
    """Every deployment that served ``version`` at some step, or serves it now."""
    out = []
    for d in rows:
        steps = [
            s
            for s in d.get("history", [])
            if s.get("model") == name and version in (s.get("version"), s.get("from_version"))
        ]
        current = d.get("model") == name and str(d.get("version")) == version
        if not steps and not current:
            continue
        out.append(
            {
                "name": d["name"],
                "target": d["target"],
                "kind": d.get("kind"),
                "endpoint": d.get("endpoint"),
                "status": d.get("status"),
                "serves_now": current,
                "serving_version": d.get("version"),
                "traffic": d.get("traffic"),
                "created": d.get("created"),
                "updated": d.get("updated"),
                "steps": steps,
            }
        )
    return out


def lineage(client: Any, records: Any, name: str, version: str) -> dict[str, Any]:
    """The lineage of registered ``name`` ``version`` (``client``: an ``MlflowClient`` on the
    tracking server and registry; ``records``: :mod:`mlflow_steward.lineage.records`)."""
    from mlflow.exceptions import MlflowException

    from mlflow_steward.plugins.events import DIGEST_TAG

    try:
        mv = client.get_model_version(name, version)
    except MlflowException as exc:
        raise LifecycleError(f"models:/{name}/{version} does not exist: {exc.message}") from None
    tags = dict(mv.tags or {})
    try:
        aliases = [
            a
            for a, v in (client.get_registered_model(name).aliases or {}).items()
            if str(v) == version
        ]
    except MlflowException:
        aliases = list(mv.aliases or [])
    out: dict[str, Any] = {
        "model": name,
        "version": version,
        "uri": f"models:/{name}/{version}",
    }
    run = None
    if mv.run_id:
        try:
            run = client.get_run(mv.run_id)
        except MlflowException:
            run = None
    out["datasets"] = _datasets(run) if run is not None else []
    out["run"] = _run(run) if run is not None else None
    logged = None
    from mlflow_steward.governance.facts import model_id_of

    model_id = model_id_of(getattr(mv, "model_id", None), mv.source)
    if model_id:
        try:
            logged = client.get_logged_model(model_id)
        except MlflowException:
            logged = None
    out["logged_model"] = _logged_model(logged) if logged is not None else None
    out["version_info"] = {
        "name": name,
        "version": version,
        "source": mv.source,
        "run_id": mv.run_id,
        "model_id": model_id,
        "created": _ms(mv.creation_timestamp),
        "user_id": mv.user_id or None,
        "description": mv.description or None,
        "status": mv.status,
        "stage": mv.current_stage,
        "aliases": sorted(aliases),
        "content_digest": tags.get(DIGEST_TAG),
        "tags": tags,
    }
    audit = records.audit(name)
    out["decisions"] = (
        None
        if audit is None
        else [e for e in audit if str(e.get("version")) == version and e.get("action")]
    )
    moves = records.moves(name)
    out["moves"] = (
        None
        if moves is None
        else [m for m in moves if version in (m.get("version"), m.get("previous_version"))]
    )
    reviews = records.reviews(name)
    out["approvals"] = (
        None if reviews is None else [r for r in reviews if str(r.get("version")) == version]
    )
    deployments = records.deployments()
    out["deployments"] = None if deployments is None else _deployments(deployments, name, version)
    out["monitoring"] = _monitoring(client, name, version)
    monitor_runs = records.monitor_runs(name, version)
    if monitor_runs:
        by_run = {m["run_id"]: m for m in monitor_runs if m.get("run_id")}
        for verdict in out["monitoring"]:
            found = by_run.get(verdict["run_id"])
            if found is not None:
                verdict["monitor"] = found["monitor"]
                verdict["actions"] = found["actions"]
    from mlflow_steward.lineage.evidence import evidence_index

    out["evidence"] = evidence_index(tags)
    out["absent"] = [s for s in SECTIONS if out.get(s) in ([], None) and _provided(s, records)]
    out["unavailable"] = [s for s in SECTIONS if not _provided(s, records)]
    return out


def _provided(section: str, records: Any) -> bool:
    """Whether the record source can say anything about ``section``."""
    if section in ("decisions", "moves"):
        return records.where != "server"
    return True


def versions_trained_on(client: Any, digest: str) -> list[dict[str, Any]]:
    """The registered versions whose source run logged a dataset with ``digest``."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = []
    if experiments:
        runs = client.search_runs(
            experiments, filter_string=f"dataset.digest = '{_quote(digest)}'", max_results=1000
        )
    out = []
    for run in runs:
        names = [d.dataset.name for d in run.inputs.dataset_inputs if d.dataset.digest == digest]
        for mv in client.search_model_versions(f"run_id = '{run.info.run_id}'"):
            out.append(
                {
                    "model": mv.name,
                    "version": str(mv.version),
                    "uri": f"models:/{mv.name}/{mv.version}",
                    "run_id": run.info.run_id,
                    "dataset": names[0] if names else None,
                }
            )
    return sorted(out, key=lambda v: (v["model"], int(v["version"])))
