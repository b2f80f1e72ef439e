"""Realised performance once labels arrive: the logged predictions of served requests joined with
labels on request id (and row within the request), scored, and compared with the same metric on
the baseline (its logged labels and predictions)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from mlflow_steward.errors import MonitoringError
from mlflow_steward.monitoring import LABEL, PERFORMANCE_METRICS, PREDICTION, REQUEST_ID


@dataclass(frozen=True)
class Performance:
    metric: str
    realised: float
    reference: float
    drop: float
    max_drop: float
    labelled: int
    degraded: bool
    missing_labels: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"realised {self.metric} {self.realised:.4g} on {self.labelled} labelled rows, "
            f"{self.reference:.4g} on the baseline: "
            + (
                f"worse by {self.drop:.4g} (more than {self.max_drop:g})"
                if self.degraded
                else f"within {self.max_drop:g}"
            )
            + (f" ({self.missing_labels} empty labels left out)" if self.missing_labels else "")
        )


def _numeric(values: Any) -> np.ndarray | None:
    converted = pd.to_numeric(pd.Series(values), errors="coerce")
    return None if converted.isna().any() else converted.to_numpy(dtype=float)


def score(metric: str, labels: Any, predictions: Any) -> float:
    y, p = np.asarray(labels), np.asarray(predictions)
    if metric == "accuracy":
        # 1 and 1.0 (labels read from CSV, predictions from JSON) are the same class.
        y_num, p_num = _numeric(y), _numeric(p)
        if y_num is not None and p_num is not None:
            return float(np.mean(y_num == p_num))
        return float(np.mean(y.astype(str) == p.astype(str)))
    error = y.astype(float) - p.astype(float)
    if metric == "rmse":
        return float(np.sqrt(np.mean(error**2)))
    if metric == "mae":
        return float(np.mean(np.abs(error)))
    raise MonitoringError(
        f"unknown performance metric {metric!r}; use one of {', '.join(PERFORMANCE_METRICS)}"
    )


def join_labels(
    current: pd.DataFrame, labels: pd.DataFrame, label_column: str = "label"
) -> pd.DataFrame:
    """Rows of ``current`` (with ``__request_id__`` and ``__prediction__``) that have a label.

    ``labels`` has ``request_id`` and ``label_column``, and ``row`` (the row's position in its
    request, from 0) when requests held several rows."""
    if REQUEST_ID not in current or PREDICTION not in current:
        raise MonitoringError(
            "realised performance needs served requests with their ids and predictions: "
            "monitor a deployment's request log (data: {requests: NAME})"
        )
    missing = [c for c in ("request_id", label_column) if c not in labels]
    if missing:
        raise MonitoringError(
            f"the labels lack column(s) {', '.join(missing)}; they need request_id, "
            f"{label_column} and, for requests with several rows, row"
        )
    served = current[[REQUEST_ID, PREDICTION]].copy()
    served["row"] = served.groupby(REQUEST_ID).cumcount()
    keys = ["request_id", "row"] if "row" in labels else ["request_id"]
    if keys == ["request_id"] and served["row"].max() > 0:
        served = served[served.groupby(REQUEST_ID)[REQUEST_ID].transform("size") == 1]
    right = labels[[*keys, label_column]].rename(columns={label_column: LABEL})
    right["request_id"] = right["request_id"].astype(str)
    # A label sent again (a correction) replaces the earlier one.
    right = right.drop_duplicates(subset=keys, keep="last")
    served[REQUEST_ID] = served[REQUEST_ID].astype(str)
    return served.merge(right, left_on=[REQUEST_ID, *keys[1:]], right_on=keys, how="inner")


def realised(
    current: pd.DataFrame,
    labels: pd.DataFrame,
    baseline: pd.DataFrame,
    *,
    metric: str,
    max_drop: float,
    min_samples: int,
    label_column: str = "label",
) -> Performance | str:
    """The realised performance, or a sentence saying why it cannot be judged."""
    if LABEL not in baseline or PREDICTION not in baseline:
        return (
            "realised performance not judged: the baseline has no labels and predictions "
            "(log_baseline(X, y, predictions, ...))"
        )
    joined = join_labels(current, labels, label_column)
    missing = int(joined[LABEL].isna().sum())
    joined = joined[joined[LABEL].notna() & joined[PREDICTION].notna()]
    if len(joined) < min_samples:
        return (
            f"realised performance not judged: {len(joined)} labelled rows, fewer than the "
            f"minimum of {min_samples}"
        )
    if metric != "accuracy" and (
        _numeric(joined[LABEL]) is None or _numeric(joined[PREDICTION]) is None
    ):
        return f"realised {metric} not judged: labels or predictions are not numbers"
    now = score(metric, joined[LABEL], joined[PREDICTION])
    known = baseline[baseline[LABEL].notna() & baseline[PREDICTION].notna()]
    then = score(metric, known[LABEL], known[PREDICTION])
    if not (np.isfinite(now) and np.isfinite(then)):
        return f"realised {metric} not judged: it is not a finite number"
    drop = then - now if metric == "accuracy" else now - then
    result = Performance(metric, now, then, drop, max_drop, len(joined), drop > max_drop)
    return result if not missing else replace(result, missing_labels=missing)
