"""Baselines: the reference data a model version is judged against, stored with the model.

``log_baseline(X, y, predictions, model_info=...)`` writes a bounded random sample of the training
features (with labels and predictions when given), each column's kind and category set, and the
producing run's metrics, into the logged model's artifacts under ``steward-baseline/``, and tags
the logged model ``steward.baseline``. Every version registered from that logged model (source
``models:/<model_id>``) finds it. Without one, monitoring falls back to a dataset the producing
run logged with ``mlflow.log_input`` when its source is a readable local file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlflow_steward.errors import MonitoringError
from mlflow_steward.monitoring import LABEL, PREDICTION

ARTIFACT_DIR = "steward-baseline"
TAG = "steward.baseline"
DEFAULT_MAX_ROWS = 100_000
#: The baseline's per-column sketches (``monitoring/sketches.py``), of all its rows.
SKETCHES = "baseline.sketches.json"
MAX_CATEGORIES = 1_000


@dataclass(frozen=True)
class Baseline:
    data: pd.DataFrame  # features, plus __label__ / __prediction__ when logged
    info: dict[str, Any]
    #: The stored sketches of all training rows (``baseline.sketches.json``), when logged.
    sketches: bytes | None = None

    @property
    def features(self) -> pd.DataFrame:
        return self.data.drop(columns=[c for c in (LABEL, PREDICTION) if c in self.data])


def _frame(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X.reset_index(drop=True)
    array = np.asarray(X)
    if array.ndim == 1:
        array = array[:, None]
    return pd.DataFrame(array, columns=[f"f{i}" for i in range(array.shape[1])])


def _describe(data: pd.DataFrame) -> dict[str, Any]:
    from mlflow_steward.monitoring.verdict import CATEGORICAL, column_kind

    columns = {}
    for name in data.columns:
        kind = column_kind(data[name])
        entry: dict[str, Any] = {"kind": kind, "dtype": str(data[name].dtype)}
        if kind == CATEGORICAL:
            values = sorted(map(str, data[name].dropna().unique()))
            entry["categories"] = values[:MAX_CATEGORIES]
        columns[str(name)] = entry
    return columns


def log_baseline(
    X: Any,
    y: Any = None,
    predictions: Any = None,
    model_info: Any = None,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
) -> str:
    """Store the reference data with a logged model; returns its artifact URI.

    ``model_info`` is what ``mlflow.<flavor>.log_model`` returned (or a logged model id).
    """
    from mlflow import MlflowClient

    model_id = getattr(model_info, "model_id", None) or (
        model_info if isinstance(model_info, str) else None
    )
    if not model_id:
        raise MonitoringError(
            "log_baseline needs the logged model: pass model_info=mlflow.<flavor>.log_model(...)"
        )
    data = _frame(X)
    for column, values in ((LABEL, y), (PREDICTION, predictions)):
        if values is not None:
            values = np.asarray(values)
            if len(values) != len(data):
                raise MonitoringError(
                    f"{column.strip('_')}s have {len(values)} rows but X has {len(data)}"
                )
            data[column] = values
    total = len(data)
    if total == 0:
        raise MonitoringError("log_baseline got no rows: a baseline needs training data")
    if total > max_rows:
        data = data.sample(n=max_rows, random_state=seed).reset_index(drop=True)
    client = MlflowClient()
    logged = client.get_logged_model(model_id)
    metrics = {}
    if logged.source_run_id:
        metrics = dict(client.get_run(logged.source_run_id).data.metrics)
    info = {
        "model_id": model_id,
        "rows": total,
        "sample_rows": len(data),
        "columns": _describe(data),
        "training_metrics": metrics,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        data.columns = [str(c) for c in data.columns]
        data.to_parquet(os.path.join(tmp, "baseline.parquet"), index=False)
        _write_sketches(X, y, predictions, Path(tmp, SKETCHES))
        Path(tmp, "baseline.json").write_text(json.dumps(info, indent=2, default=str))
        client.log_model_artifacts(model_id, tmp, artifact_path=ARTIFACT_DIR)
    client.set_logged_model_tags(model_id, {TAG: ARTIFACT_DIR})
    return f"{logged.artifact_location.rstrip('/')}/{ARTIFACT_DIR}"


def _write_sketches(X: Any, y: Any, predictions: Any, path: Path) -> None:
    """Sketches of the whole training data (not the sample), so a window streamed into
    sketches is compared with all of it; skipped without the sketches extra."""
    try:
        import datasketches  # noqa: F401
    except ImportError:
        return
    from mlflow_steward.monitoring import sketches

    whole = _frame(X)
    whole.columns = [str(c) for c in whole.columns]
    for column, values in ((LABEL, y), (PREDICTION, predictions)):
        if values is not None:
            whole[column] = np.asarray(values)
    path.write_bytes(sketches.dumps(sketches.sketch_reference(whole)))


def load_baseline(client: Any, model_id: str | None, run_id: str | None, target: str) -> Baseline:
    """The baseline of a registered version (``target`` names it in errors)."""
    import mlflow.artifacts

    if model_id:
        logged = client.get_logged_model(model_id)
        if TAG in logged.tags:
            uri = f"{logged.artifact_location.rstrip('/')}/{logged.tags[TAG]}"
            with tempfile.TemporaryDirectory() as tmp:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=tmp, tracking_uri=client.tracking_uri
                )
                data = pd.read_parquet(os.path.join(local, "baseline.parquet"))
                info = json.loads(Path(local, "baseline.json").read_text())
                stored = Path(local, SKETCHES)
                # Logged where datasketches was installed.
                sketches = stored.read_bytes() if stored.is_file() else None
            info["source"] = uri
            return Baseline(data, info, sketches)
    if run_id:
        found = _logged_input(client, run_id)
        if found is not None:
            return found
    raise MonitoringError(
        f"{target} has no baseline to compare with: log one from the training code with "
        "mlflow_steward.log_baseline(X_train, y_train, predictions, model_info=<log_model's "
        "result>), or log the training data with mlflow.log_input(...) from a readable file"
    )


def _logged_input(client: Any, run_id: str) -> Baseline | None:
    """A training dataset the run logged with ``mlflow.log_input`` whose source is a local file."""
    run = client.get_run(run_id)
    for dataset_input in getattr(run.inputs, "dataset_inputs", None) or []:
        dataset = dataset_input.dataset
        try:
            source = json.loads(dataset.source)
        except (TypeError, ValueError):
            continue
        path = source.get("path") or source.get("uri") or source.get("url")
        if not path:
            continue
        path = str(path).removeprefix("file://")
        if not os.path.isfile(path):
            continue
        from mlflow_steward.monitoring.data import read_table

        data = read_table(Path(path))
        return Baseline(
            data,
            {
                "source": path,
                "rows": len(data),
                "sample_rows": len(data),
                "columns": _describe(data),
                "from": "mlflow.log_input",
            },
        )
    return None
