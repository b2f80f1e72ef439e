"""Judge a batch of current data against a reference: per-column drift, data quality, and one
verdict.

``judge`` picks a method per column (``auto``: by column kind and sample size; p-value tests for
small samples, distances with thresholds for large ones, where every test would flag trivial
differences), corrects p-values for testing many columns (Bonferroni or Benjamini-Hochberg),
refuses to judge below a minimum sample size, and combines the columns into one verdict (the
share of drifted columns, optionally weighted by importance). Every finding records the method,
threshold and sample sizes used, so the verdict can be reproduced. Bad data is a finding, never
an exception: a verdict of ``invalid`` or ``insufficient data`` must lead to no action.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from mlflow_steward.monitoring import stats

NUMERIC, CATEGORICAL = "numeric", "categorical"
HEALTHY, DRIFT, INSUFFICIENT, INVALID = "healthy", "drift", "insufficient data", "invalid"
METHODS = ("auto", "ks", "wasserstein", "psi", "jensen-shannon", "chi-square", "linf")
CORRECTIONS = ("bonferroni", "benjamini-hochberg", "none")

#: Distance thresholds above which a column counts as drifted (the usual rules of thumb).
DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "wasserstein": 0.1,  # in reference standard deviations
    "psi": 0.2,
    "jensen-shannon": 0.1,
    "linf": 0.1,
}


@dataclass(frozen=True)
class ColumnFinding:
    column: str
    kind: str
    method: str
    statistic: float | None
    p_value: float | None
    threshold: float
    drifted: bool
    n_reference: int
    n_current: int
    note: str = ""


@dataclass(frozen=True)
class Verdict:
    status: str
    columns: list[ColumnFinding]
    drifted: list[str]
    share: float
    quality: list[str]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def column_kind(series: pd.Series) -> str:
    return (
        NUMERIC
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        else CATEGORICAL
    )


def adjust(p_values: list[float], correction: str) -> list[float]:
    """P-values adjusted for testing several columns at once."""
    p = np.asarray(p_values, dtype=float)
    if correction == "none" or len(p) == 0:
        return p.tolist()
    if correction == "bonferroni":
        return np.minimum(p * len(p), 1.0).tolist()
    if correction == "benjamini-hochberg":
        from scipy.stats import false_discovery_control

        return false_discovery_control(p, method="bh").tolist()
    raise ValueError(f"correction {correction!r}: use one of {', '.join(CORRECTIONS)}")


#: Methods that judge only one kind of column; a forced method applies to columns of its kind,
#: the others get the automatic choice.
_KIND_OF = {"ks": NUMERIC, "wasserstein": NUMERIC, "chi-square": CATEGORICAL, "linf": CATEGORICAL}


def _pick(kind: str, method: str, n_current: int, large_sample: int) -> str:
    if method != "auto" and _KIND_OF.get(method, kind) == kind:
        return method
    if kind == NUMERIC:
        return "ks" if n_current < large_sample else "wasserstein"
    return "chi-square" if n_current < large_sample else "jensen-shannon"


def judge(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    method: str = "auto",
    correction: str = "benjamini-hochberg",
    alpha: float = 0.05,
    thresholds: Mapping[str, float] | None = None,
    min_samples: int = 100,
    large_sample: int = 5_000,
    drift_share: float = 0.3,
    weights: Mapping[str, float] | None = None,
) -> Verdict:
    """The verdict on ``current`` against ``reference`` (both DataFrames, one column a feature)."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: use one of {', '.join(METHODS)}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction {correction!r}: use one of {', '.join(CORRECTIONS)}")
    limits = {**DEFAULT_THRESHOLDS, **dict(thresholds or {})}
    settings = {
        "method": method,
        "correction": correction,
        "alpha": alpha,
        "thresholds": limits,
        "min_samples": min_samples,
        "large_sample": large_sample,
        "drift_share": drift_share,
        "weights": dict(weights or {}),
    }
    quality: list[str] = []
    missing = [c for c in reference.columns if c not in current.columns]
    extra = [c for c in current.columns if c not in reference.columns]
    if extra:
        quality.append(
            f"extra columns not in the reference (ignored): {', '.join(map(str, extra))}"
        )
    if missing:
        quality.append(f"schema mismatch: missing columns {', '.join(map(str, missing))}")
        return Verdict(INVALID, [], [], 0.0, quality, settings)
    if len(current) < min_samples:
        quality.append(
            f"{len(current)} rows in the current batch, fewer than the minimum of {min_samples}: "
            "not judged"
        )
        return Verdict(INSUFFICIENT, [], [], 0.0, quality, settings)

    findings: list[ColumnFinding] = []
    tests: list[int] = []  # indexes of findings decided by a p-value
    unusable = False
    for name in reference.columns:
        ref_col, cur_col = reference[name], current[name]
        kind = column_kind(ref_col)
        nulls = int(cur_col.isna().sum())
        if nulls:
            quality.append(f"column {name}: {nulls} of {len(cur_col)} values missing")
        ref_values, cur_values = ref_col.dropna().to_numpy(), cur_col.dropna().to_numpy()
        if kind == NUMERIC and column_kind(cur_col) == NUMERIC:
            bad = int((~np.isfinite(ref_values)).sum()), int((~np.isfinite(cur_values)).sum())
            for side, count in zip(("reference", "current"), bad, strict=True):
                if count:
                    quality.append(
                        f"column {name}: {count} infinite values in the {side} (left out)"
                    )
            ref_values = ref_values[np.isfinite(ref_values)]
            cur_values = cur_values[np.isfinite(cur_values)]
        if kind == NUMERIC and len(cur_values) and column_kind(cur_col) != NUMERIC:
            quality.append(
                f"schema mismatch: column {name} is numeric in the reference but holds "
                f"{cur_col.dtype} values now"
            )
            return Verdict(INVALID, findings, [], 0.0, quality, settings)
        if len(cur_values) < min_samples or len(ref_values) < min_samples:
            note = "all values missing" if not len(cur_values) else "too few values"
            if not len(cur_values):
                # A column that lost every value is a broken feed: no verdict, so no action.
                quality.append(f"column {name}: no values at all in the current batch")
                unusable = True
            findings.append(
                ColumnFinding(
                    str(name),
                    kind,
                    "none",
                    None,
                    None,
                    0.0,
                    False,
                    len(ref_values),
                    len(cur_values),
                    f"{note}: not judged",
                )
            )
            continue
        chosen = _pick(kind, method, len(cur_values), large_sample)
        findings.append(_measure(str(name), kind, chosen, ref_values, cur_values, limits, quality))
        if findings[-1].p_value is not None:
            tests.append(len(findings) - 1)

    adjusted = adjust([findings[i].p_value for i in tests], correction)
    for i, p in zip(tests, adjusted, strict=True):
        note = findings[i].note + (f"; p adjusted ({correction})" if correction != "none" else "")
        findings[i] = replace(findings[i], p_value=p, threshold=alpha, drifted=p < alpha, note=note)
    judged = [f for f in findings if f.method != "none"]
    if unusable:
        return Verdict(INVALID, findings, [], 0.0, quality, settings)
    if not judged:
        return Verdict(INSUFFICIENT, findings, [], 0.0, quality, settings)
    weight = dict(weights or {})
    total = sum(weight.get(f.column, 1.0) for f in judged)
    drifted = [f.column for f in judged if f.drifted]
    share = sum(weight.get(c, 1.0) for c in drifted) / total if total else 0.0
    status = DRIFT if drifted and share >= drift_share else HEALTHY
    return Verdict(status, findings, drifted, share, quality, settings)


def _measure(
    name: str,
    kind: str,
    method: str,
    ref: np.ndarray,
    cur: np.ndarray,
    limits: Mapping[str, float],
    quality: list[str],
) -> ColumnFinding:
    n1, n2 = len(ref), len(cur)
    if method == "ks":
        result = stats.ks_columns(ref.astype(float), cur.astype(float))
        return ColumnFinding(
            name,
            kind,
            f"ks ({result.method})",
            float(result.statistic[0]),
            float(result.pvalue[0]),
            0.0,
            False,
            n1,
            n2,
        )
    if method == "wasserstein":
        scale = float(np.std(ref)) or 1.0
        distance = stats.wasserstein(ref.astype(float), cur.astype(float)) / scale
        limit = limits["wasserstein"]
        return ColumnFinding(
            name,
            kind,
            "wasserstein (in reference std)",
            distance,
            None,
            limit,
            distance > limit,
            n1,
            n2,
        )
    if kind == NUMERIC:
        edges = stats.numeric_bins(ref.astype(float))
        ref_counts = stats.histogram(ref.astype(float), edges)
        cur_counts = stats.histogram(cur.astype(float), edges)
        note = f"{len(edges) + 1} bins at reference quantiles"
    else:
        categories, ref_counts, cur_counts = stats.category_counts(ref, cur)
        unseen = [c for c, n in zip(categories, ref_counts, strict=True) if n == 0]
        if unseen:
            quality.append(f"column {name}: categories not in the reference: {', '.join(unseen)}")
        note = f"{len(categories)} categories"
    if method == "chi-square":
        statistic, p = stats.chi_square(ref_counts, cur_counts)
        return ColumnFinding(name, kind, "chi-square", statistic, p, 0.0, False, n1, n2, note)
    measure = {"psi": stats.psi, "jensen-shannon": stats.jensen_shannon, "linf": stats.linf}
    value = measure[method](ref_counts, cur_counts)
    limit = limits[method]
    return ColumnFinding(name, kind, method, value, None, limit, value > limit, n1, n2, note)
